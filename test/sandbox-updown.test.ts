/**
 * kpi sandbox up / down through the CLI: up returns once ready and leaves a supervisor running,
 * with DIR/env and DIR/values.yaml; down stops everything, is safe twice, and sweeps up after a
 * supervisor that was killed outright. Run `npm run build` first.
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {parse} from 'yaml'
import {afterAll, describe, expect, it} from 'vitest'
import {readState, writeState} from '../src/sandbox/state.js'
import {expectCleanFailure, kpi, KPI_BIN, startKpi} from './helpers/cli.js'

const ENV_KEYS = ['KUBECONFIG', 'DOCKER_CONFIG', 'KPI_PLAIN_HTTP', 'KPI_SANDBOX_PUBLIC', 'KPI_SANDBOX_AIRGAP', 'KPI_SANDBOX_USERNAME',
  'KPI_SANDBOX_PASSWORD', 'KPI_SANDBOX_CA', 'KPI_SANDBOX_BUNDLE_V1', 'KPI_SANDBOX_BUNDLE_V2']

/** Processes whose command line names a path under dir. */
async function processesUnder(dir: string): Promise<number[]> {
  const out: number[] = []
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const args = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')
    if (args.split('\0').some((a) => a.includes(`${dir}/`))) out.push(Number(e))
  }
  return out
}

/** The environment DIR/env exports, as a shell sees it. */
function sourcedEnv(dir: string): Record<string, string> {
  const out = execFileSync('bash', ['-c', `set -a; . ${join(dir, 'env')}; env -0`], {encoding: 'utf8', env: {}})
  return Object.fromEntries(out.split('\0').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
}

/** What every test leaves behind: its sandbox stopped and its directory removed. */
async function downAndRemove(dir: string): Promise<void> {
  await kpi(['sandbox', 'down', '--dir', dir])
  await rm(dir, {recursive: true, force: true})
}

describe('kpi sandbox up and down', () => {
  let dir = ''
  afterAll(async () => {
    await downAndRemove(dir)
  })

  it('up leaves a ready sandbox with env and values; down stops it, twice; a killed supervisor is swept up', async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-up-'))
    const up = await kpi(['sandbox', 'up', '--dir', dir])
    expect(up.code, up.stderr).toBe(0)
    expect(up.stdout).toMatch(/^sandbox ready in \d+\.\ds/m)
    const env = sourcedEnv(dir)
    for (const k of ENV_KEYS) expect(env[k], k).toBeTruthy()
    expect(env.KPI_PLAIN_HTTP).toBe(env.KPI_SANDBOX_PUBLIC)
    const values = parse(await readFile(join(dir, 'values.yaml'), 'utf8')) as {registry: Record<string, string>; caCerts: string[]}
    expect(values.registry).toEqual({server: env.KPI_SANDBOX_AIRGAP, repository: 'build-service', username: env.KPI_SANDBOX_USERNAME, password: env.KPI_SANDBOX_PASSWORD})
    expect(values.caCerts[0]).toBe(await readFile(env.KPI_SANDBOX_CA!, 'utf8'))
    // the control plane answers kpi with what DIR/env says
    const status = await kpi(['status'], env)
    expect(status.stderr).toContain('no kpi installation in the cluster')
    // the air-gapped registry answers with the credentials and CA in DIR/env
    const res = await fetch(`https://${env.KPI_SANDBOX_AIRGAP}/v2/`, {
      headers: {authorization: `Basic ${Buffer.from(`${env.KPI_SANDBOX_USERNAME}:${env.KPI_SANDBOX_PASSWORD}`).toString('base64')}`},
      // @ts-expect-error undici option: trust the sandbox CA for this request only
      dispatcher: new (await import('undici')).Agent({connect: {ca: await readFile(env.KPI_SANDBOX_CA!, 'utf8')}}),
    })
    expect(res.status).toBe(200)
    const again = await kpi(['sandbox', 'up', '--dir', dir])
    expect(again.stdout).toContain('sandbox already running')

    const down = await kpi(['sandbox', 'down', '--dir', dir])
    expect(down.stdout).toContain(`sandbox in ${dir} stopped`)
    expect(await processesUnder(dir)).toEqual([])
    expect((await kpi(['sandbox', 'down', '--dir', dir])).stdout).toContain(`no sandbox running in ${dir}`)

    // a supervisor killed outright leaves its servers running: down sweeps them up
    const up2 = await kpi(['sandbox', 'up', '--dir', dir])
    expect(up2.code, up2.stderr).toBe(0)
    const state = (await readState(dir))!
    process.kill(state.pid, 'SIGKILL')
    expect((await processesUnder(dir)).length).toBeGreaterThan(0)
    const sweep = await kpi(['sandbox', 'down', '--dir', dir])
    expect(sweep.stdout).toMatch(/leftover processes killed/)
    expect(await processesUnder(dir)).toEqual([])
  }, 600_000) // two sandbox starts: minutes on a loaded machine
})

describe('kpi sandbox up and down: failures and stale state', () => {
  it('up that cannot start says why and how to fix it (a tool not built: which, and scripts/tools.sh)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-notools-'))
    const cache = await mkdtemp(join(tmpdir(), 'kpi-empty-cache-'))
    try {
      // an empty tools cache: what a fresh machine has before scripts/tools.sh
      const up = await kpi(['sandbox', 'up', '--dir', dir], {KPI_CACHE_DIR: cache})
      const line = expectCleanFailure(up)
      expect(line).toMatch(/etcd \S+ not found/)
      expect(line).toContain('scripts/tools.sh')
      expect(up.code).toBe(7) // not-found, as the tool lookup said
      expect(await processesUnder(dir)).toEqual([])
    } finally {
      await downAndRemove(dir)
      await rm(cache, {recursive: true, force: true})
    }
  }, 120_000)

  it('up without Debian\'s docker-registry says to run scripts/setup.sh, which installs it (tools.sh does not)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-noregistry-'))
    try {
      const up = await kpi(['sandbox', 'up', '--dir', dir], {KPI_DOCKER_REGISTRY_BIN: join(dir, 'no', 'docker-registry')})
      const line = expectCleanFailure(up)
      expect(line).toContain(`${join(dir, 'no', 'docker-registry')} not found`)
      expect(line).toContain('scripts/setup.sh')
      expect(line).not.toContain('scripts/tools.sh')
    } finally {
      await downAndRemove(dir)
    }
  }, 120_000)

  it('down leaves alone a process that now has the pid a dead supervisor had', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-stale-'))
    // stands for whatever the system gave the pid to after the supervisor died (a crash, a reboot)
    const other = spawn('sleep', ['300'], {stdio: 'ignore'})
    try {
      for (const state of ['stopped', 'ready'] as const) {
        await writeState(dir, {pid: other.pid!, state, startedAt: new Date().toISOString()})
        const down = await kpi(['sandbox', 'down', '--dir', dir])
        expect(down.code, down.stderr).toBe(0)
        expect(down.stdout).toContain(`no sandbox running in ${dir}`)
        await sleep(200)
        expect(other.exitCode ?? other.signalCode, state).toBeNull()
      }
    } finally {
      other.kill('SIGKILL')
      await rm(dir, {recursive: true, force: true})
    }
  }, 60_000)

  it('down under a wrapper whose command line names DIR too (sudo, timeout) leaves the wrapper alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-wrapped-'))
    try {
      // the sandbox needs root: `sudo kpi sandbox down --dir DIR` is how many run it
      const r = spawnSync('timeout', ['60', process.execPath, KPI_BIN, 'sandbox', 'down', '--dir', dir], {encoding: 'utf8'})
      expect(r.signal).toBeNull()
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toContain(`no sandbox running in ${dir}`)
      expect(r.stdout).not.toContain('leftover')
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  }, 60_000)

  it('Ctrl-C of up while the sandbox starts stops that sandbox', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-ctrlc-'))
    const run = startKpi(['sandbox', 'up', '--dir', dir])
    const apiserverRuns = async () => {
      for (const pid of await processesUnder(dir)) {
        if ((await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('kube-apiserver')) return true
      }
      return false
    }
    try {
      for (let i = 0; i < 240 && !(await apiserverRuns()); i++) await sleep(250)
      expect(await apiserverRuns(), 'kube-apiserver started').toBe(true)
      run.child.kill('SIGINT')
      const r = await Promise.race([run.done, sleep(90_000).then(() => undefined)])
      expect(r, 'up still ran 90 s after SIGINT').toBeDefined()
      expect(r!.code).toBe(130)
      expect(expectCleanFailure(r!)).toMatch(/interrupted: the sandbox that was starting in \S+ is stopped/)
      expect(await processesUnder(dir)).toEqual([])
    } finally {
      run.child.kill('SIGKILL')
      await downAndRemove(dir)
    }
  }, 180_000)

  it('two ups started together: one starts the sandbox, the other says one is starting', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-twice-'))
    try {
      const [a, b] = await Promise.all([kpi(['sandbox', 'up', '--dir', dir]), kpi(['sandbox', 'up', '--dir', dir])])
      const [won, lost] = a.code === 0 ? [a, b] : [b, a]
      expect(won.code, won.stderr).toBe(0)
      expect(won.stdout).toMatch(/^sandbox ready in/m)
      expect(lost.signal).toBeNull()
      if (lost.code === 0) expect(lost.stdout).toContain('sandbox already running')
      else expect(expectCleanFailure(lost)).toMatch(/another kpi sandbox up is starting a sandbox in/)
      const state = (await readState(dir))!
      expect(state.state).toBe('ready')
      const env = sourcedEnv(dir)
      expect((await kpi(['status'], env)).stderr).toContain('no kpi installation in the cluster')
    } finally {
      await downAndRemove(dir)
    }
  }, 300_000)

  it('up leaves alone a run/ that no sandbox made (--dir ~ holds ~/run)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-home-'))
    await mkdir(join(dir, 'run'))
    await writeFile(join(dir, 'run', 'notes.txt'), 'mine\n')
    const r = await kpi(['sandbox', 'up', '--dir', dir])
    expect(r.code, r.stderr).toBe(2)
    expect(expectCleanFailure(r)).toContain(`--dir ${dir} holds a run/ that no sandbox made`)
    expect(await readFile(join(dir, 'run', 'notes.txt'), 'utf8')).toBe('mine\n')
    await rm(dir, {recursive: true, force: true})
  })

  it('down sweeps only paths under DIR, not paths that merely end in it (a sandbox in /var/tmp/X beside /tmp/X)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-suffix-'))
    // a process of another sandbox whose directory's path ends with this one's
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 300_000)', `/elsewhere${dir}/run/public/public.config.yml`], {stdio: 'ignore'})
    try {
      await sleep(300)
      const down = await kpi(['sandbox', 'down', '--dir', dir])
      expect(down.code, down.stderr).toBe(0)
      expect(down.stdout).not.toContain('leftover')
      await sleep(200)
      expect(other.exitCode ?? other.signalCode).toBeNull()
    } finally {
      other.kill('SIGKILL')
      await rm(dir, {recursive: true, force: true})
    }
  }, 60_000)

  it.runIf(process.getuid?.() === 0)('down by a user who may not stop root\'s sandbox says to run it as that user', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-sandbox-eperm-'))
    await chmod(dir, 0o755)
    // stands for root's supervisor of dir (down checks its command line, then signals it)
    const fake = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 300_000)', '/x/dist/cli/sandbox-supervisor.js', dir], {stdio: 'ignore'})
    try {
      await sleep(300)
      await writeState(dir, {pid: fake.pid!, state: 'ready', startedAt: new Date().toISOString()})
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, KPI_BIN, 'sandbox', 'down', '--dir', dir], {
        encoding: 'utf8', env: {...process.env, HOME: dir}, timeout: 60_000,
      })
      const line = expectCleanFailure({code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr})
      expect(line).toMatch(/runs as another user/)
      expect(line).toMatch(/sudo/)
      expect(r.status).toBe(2)
      expect(fake.exitCode ?? fake.signalCode).toBeNull()
    } finally {
      fake.kill('SIGKILL')
      await rm(dir, {recursive: true, force: true})
    }
  }, 60_000)
})
