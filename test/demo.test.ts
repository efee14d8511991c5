/**
 * `kpi demo` (what `npm run demo` runs) end to end: the sandbox, v1 across the air gap as one
 * archive, an install that waits for kpack's own controller to make every stack, store and builder
 * Ready (--wait=ready, the default), twice; v2 as a delta, diff, upgrade, a failed upgrade rolled
 * back by itself, and `kpi rollback 1`. Run `npm run build` first.
 */
import {spawnSync} from 'node:child_process'
import {chown, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {LOCK_DIR, releaseDeadOwnerSubnet} from '../src/sandbox/podnet.js'
import {expectCleanFailure, kpi, KPI_BIN, startKpi} from './helpers/cli.js'

/** Command lines of the processes that name a path under dir. */
async function processesUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const args = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')
    if (args.split('\0').some((a) => a.includes(`${dir}/`))) out.push(args.replace(/\0/g, ' ').slice(0, 120))
  }
  return out
}

/** The pod subnets (podnet.ts locks) pid holds. */
async function subnetsOf(pid: number): Promise<number[]> {
  const out: number[] = []
  for (const f of await readdir(LOCK_DIR).catch(() => [] as string[])) {
    const m = /^(\d+)\.lock$/.exec(f)
    if (m && (await readFile(join(LOCK_DIR, f), 'utf8').catch(() => '')).trim() === String(pid)) out.push(Number(m[1]))
  }
  return out
}

describe('kpi demo', () => {
  it('carries v1 across the air gap, installs it Ready by kpack (again: nothing changed), upgrades to v2, survives a failed upgrade, rolls back to 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-demo-'))
    const r = await kpi(['demo', '--dir', dir])
    if (r.code !== 0) console.error(r.stdout.slice(-4000), r.stderr.slice(-2000))
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain('not built')
    expect(r.stdout).toMatch(/Installed build-service 1\.0\.0 \(kpack 0\.16\.1\) as revision 1/)
    expect(r.stdout).toMatch(/0 objects changed/)
    expect(r.stdout).toMatch(/Upgraded build-service 1\.0\.0 \(kpack 0\.16\.1, revision \d+\) to 1\.1\.0 \(kpack 0\.17\.2\)/)
    expect(r.stdout).toMatch(/Rolled back to revision 1: build-service 1\.0\.0 \(kpack 0\.16\.1\)/)
    // the failed upgrade's gate judged the greedy pod hopeless (kpi history shows why), within the default timeout
    expect(r.stdout).toMatch(/revision 3: stage controllers: Deployment kpack\/kpack-controller failed: pod kpack-controller-\S+ can never be scheduled: it requests cpu 64/)
    expect(r.stderr).toMatch(/warning: Deployment kpack\/kpack-controller: no node can run its pods: it requests cpu 64/)
    // install, install again, upgrade, rollback: each ends with kpack's own word on every resource
    expect(r.stdout.match(/kpack readiness: every stack, store and builder is Ready/g)).toHaveLength(4)
    expect(r.stdout).toContain('=== Demo finished')
    // marked as the demo's: a later demo may empty it
    expect((await readdir(dir)).includes('.kpi-demo')).toBe(true)
    await rm(dir, {recursive: true, force: true})
  }, 600_000)

  it('refuses a --dir that holds files it did not make, before anything starts, and deletes none of them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-demo-mine-'))
    await writeFile(join(dir, 'thesis.tex'), 'years of work\n')
    const r = await kpi(['demo', '--dir', dir])
    expect(r.code, r.stderr).toBe(2)
    expect(expectCleanFailure(r)).toContain(`--dir ${dir} holds files kpi demo did not make`)
    expect(await readFile(join(dir, 'thesis.tex'), 'utf8')).toBe('years of work\n')
    await rm(dir, {recursive: true, force: true})
  })

  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)('%s while the sandbox starts stops the demo and everything it started', async (sig) => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-demo-signal-'))
    const run = startKpi(['demo', '--dir', dir])
    try {
      // mid-start: the registries run and the control plane is coming up
      for (let i = 0; i < 240 && !(await processesUnder(dir)).some((c) => c.includes('kube-apiserver')); i++) await sleep(250)
      expect((await processesUnder(dir)).some((c) => c.includes('kube-apiserver')), 'kube-apiserver started').toBe(true)
      run.child.kill(sig)
      const r = await Promise.race([run.done, sleep(60_000).then(() => undefined)])
      expect(r, `the demo still ran 60 s after ${sig}`).toBeDefined()
      expect(r!.code).toBe(130)
      expect(r!.stderr).toMatch(/^Error: the demo was interrupted; its sandbox is stopped/m)
      expect(r!.stdout).not.toContain('=== Connected side')
      expect(await processesUnder(dir)).toEqual([])
      expect(await subnetsOf(run.child.pid!)).toEqual([])
    } finally {
      run.child.kill('SIGKILL')
      await run.done
      // what an unfixed demo leaves: its servers and its pod subnet
      await kpi(['sandbox', 'down', '--dir', dir])
      for (const i of await subnetsOf(run.child.pid!)) await releaseDeadOwnerSubnet(i, run.child.pid!)
      await rm(dir, {recursive: true, force: true})
    }
  }, 180_000)

  it.runIf(process.getuid?.() === 0)('run by a user other than root, says at once that it needs root', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-demo-user-'))
    try {
      await chown(dir, 65534, 65534)
      // as nobody: the demo's first step would fail on /run/kpi-sandbox, after the registries and samples
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, KPI_BIN, 'demo', '--dir', join(dir, 'run')], {
        encoding: 'utf8', env: {...process.env, HOME: dir, KPI_CACHE_DIR: join(dir, 'cache')}, timeout: 60_000,
      })
      const line = expectCleanFailure({code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr})
      expect(line).toMatch(/needs root/)
      expect(line).toMatch(/run it as root/)
      expect(r.status).toBe(2)
      expect(await processesUnder(dir)).toEqual([])
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  }, 120_000)
})
