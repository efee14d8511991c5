/**
 * Cluster faults during upgrade and rollback, on a sandbox running kpack's own controller and
 * webhook (0.16.1 for v1, 0.17.2 for v2), so every Ready is kpack's word:
 * - kpack's controller process killed while the upgrade gates on kpack's Ready;
 * - the kube-apiserver restarted mid-upgrade;
 * - kpi SIGKILLed during a rollback, and at each upgrade stage in turn (crds .. teams, prune),
 *   each next run finishing the one killed before.
 * After each fault kpi completed, or failed with one clean line: having put the previous revision
 * back by itself (exit 12), or naming the command that finishes the job (the error's hint, or
 * `kpi status`'s "finish it with"), which then runs. Either way the platform is one revision,
 * fully: the latest record deployed, `kpi status` healthy with kpack's Ready on every resource,
 * and every Deployment's images, kpack resource's spec and ConfigMap's data in the cluster exactly
 * as one version renders them (platform-state.ts), never some of each.
 */
import {readdirSync, readFileSync} from 'node:fs'
import {beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {expectCleanFailure, startKpi, stderrShows, type CliResult} from '../helpers/cli.js'
import {waitFor} from '../../src/sandbox/procs.js'
import {usePlatformSandbox} from '../helpers/platform.js'
import {faultInjected} from './ledger.js'
import {comparable, differences, distinguishing, type Rendered} from './platform-state.js'
import {describeRef, refOf, type ObjectRef} from '../../src/kube/types.js'
import type {KubeObject} from '../../src/render/types.js'

type Version = 'v1' | 'v2'
const p = usePlatformSandbox('reliability-upgrade', {runPods: true})
const locks: Record<Version, string> = {v1: '', v2: ''}
const rendered: Partial<Record<Version, Rendered>> = {}
/** every object each version renders */
const renderedAll: Partial<Record<Version, KubeObject[]>> = {}
const platformVersion: Partial<Record<Version, string>> = {}
let values = ''
let ca: string[] = []

const t0 = Date.now()
function step(what: string, r?: CliResult): void {
  const errs = r?.code ? `\n${r.stderr.split('\n').filter((l) => l.startsWith('Error:')).join('\n')}` : ''
  console.log(`[${((Date.now() - t0) / 1000).toFixed(0)}s] ${what}${errs}`)
}

const wait = (mode: 'ready' | 'applied') => [`--wait=${mode}`, '--timeout', mode === 'ready' ? '4m' : '2m']
const upgradeArgs = (v: Version, mode: 'ready' | 'applied') => ['upgrade', '-b', locks[v], '-f', values, ...ca, ...wait(mode)]
const start = (args: string[]) => startKpi(args, p.env)

beforeAll(async () => {
  ca = ['--ca-cert', p.sb.caFile]
  values = await p.values('values')
  ;[locks.v1, locks.v2] = await Promise.all([p.relocate('v1'), p.relocate('v2')])
  for (const v of ['v1', 'v2'] as const) {
    const r = await p.run(['render', '-b', locks[v], '-f', values, '--json'])
    expect(r.code, r.stderr).toBe(0)
    rendered[v] = comparable(r.stdout)
    renderedAll[v] = (JSON.parse(r.stdout) as {objects: Array<{object: KubeObject}>}).objects.map((o) => o.object)
    platformVersion[v] = (await p.lock(v)).metadata.version
  }
  // the check can tell the versions apart: kpack's Deployments run other images
  expect(distinguishing(rendered.v1!, rendered.v2!)).toContain('Deployment kpack/kpack-controller')
  // v1's readiness is not what these faults are about: the upgrades that follow wait for v2's
  const r = await p.run(['install', '-b', locks.v1, '-f', values, ...ca, ...wait('applied')])
  expect(r.code, r.stderr).toBe(0)
  step('v1 installed')
}, 600_000)

/**
 * The platform is one version, fully, and it is returned: the latest revision is deployed, kpi
 * status says healthy (bare: kpack judged every resource Ready), and the cluster is that version's
 * render exactly. `kept`: objects a rollback to v1 leaves on purpose (it says so).
 */
async function oneVersion(expected?: Version): Promise<Version> {
  const heads = await p.heads()
  expect(heads.filter((h) => h.status.startsWith('pending-')), 'no revision left pending').toEqual([])
  const latest = heads.at(-1)!
  expect(latest.status, `revision ${latest.revision} is the latest`).toBe('deployed')
  const record = await p.record(latest.revision)
  const v: Version = record.version === platformVersion.v1 ? 'v1' : 'v2'
  if (expected) expect(v).toBe(expected)
  const st = await p.run(['status'])
  expect(st.code, `${st.stdout}\n${st.stderr}`).toBe(0)
  expect(st.stdout.trim().split('\n').at(-1), st.stdout).toBe('healthy')
  // kpack 0.16's webhook refuses to decode a ClusterLifecycle, even to delete it: a rollback to v1
  // keeps it and says so (kpi rollback prints "kept: ClusterLifecycle default-lifecycle")
  const kept = new Set(v === 'v1' ? ['ClusterLifecycle default-lifecycle'] : [])
  const diff = await differences(p.kube, rendered[v]!, rendered[v === 'v1' ? 'v2' : 'v1']!, kept)
  expect(diff, `the cluster is ${v} (revision ${latest.revision}) throughout`).toEqual([])
  step(`platform is ${v} (revision ${latest.revision}), healthy`)
  return v
}

/**
 * After a fault, the command the product names: the failed run's hint, or when the run was
 * killed (no output), the "finish it with" line of kpi status. Returns the kpi arguments.
 */
function followUp(hint: string, prefer?: 'upgrade' | 'rollback'): string[] {
  const named = [...hint.matchAll(/kpi (upgrade|rollback)(?: (\d+))?/g)]
  // of two commands the hint offers, the test takes the one it means to exercise
  const m = named.find((x) => x[1] === prefer) ?? named.at(-1)
  expect(m, `a hint naming kpi upgrade or kpi rollback: ${hint}`).toBeDefined()
  if (m![1] === 'rollback') return ['rollback', ...(m![2] ? [m![2]] : []), ...wait('ready')]
  return upgradeArgs('v2', 'ready')
}

async function statusHint(): Promise<string> {
  const st = await p.run(['status'])
  expect(st.stderr).not.toMatch(/^\s+at /m)
  expect(st.code, 'an interrupted operation is not healthy').not.toBe(0)
  const line = st.stdout.split('\n').find((l) => l.includes('finish it with:'))
  expect(line, `kpi status names the command that finishes the interrupted operation:\n${st.stdout}`).toBeDefined()
  return line!
}

/**
 * A faulted run finished: it completed; or it failed a gate and put the previous revision back by
 * itself (exit 12, "rolled back by itself ... which is healthy": nothing to follow up, the platform
 * must be that revision); or it failed with one line whose hint is followed. Then one version.
 */
async function settle(r: CliResult, what: string, previous: Version): Promise<Version> {
  step(`${what}: ${r.code === 0 ? 'completed' : `exit ${r.code}`}`, r)
  if (r.code === 12) {
    expect(expectCleanFailure(r)).toMatch(/rolled back by itself to revision \d+ .*, which is healthy/)
    return oneVersion(previous)
  }
  if (r.code !== 0) {
    // the hint closes the one error line
    const next = followUp(expectCleanFailure(r))
    const f = await p.run(next)
    step(`follow-up kpi ${next.slice(0, 2).join(' ')}: exit ${f.code}`, f)
    expect(f.code, f.stderr).toBe(0)
  }
  return oneVersion()
}

/** Brings the platform to `v` (rolling back to the newest revision of v1 names it: the previous one may be v2). */
async function toVersion(v: Version, mode: 'ready' | 'applied'): Promise<void> {
  const heads = await p.heads()
  if ((await p.record(heads.at(-1)!.revision)).version === platformVersion[v]) return
  let args = upgradeArgs('v2', mode)
  if (v === 'v1') {
    const superseded = heads.filter((h) => h.status === 'superseded').reverse()
    let target: number | undefined
    for (const h of superseded) if ((await p.record(h.revision)).version === platformVersion.v1) target ??= h.revision
    expect(target, 'a v1 revision to roll back to').toBeDefined()
    args = ['rollback', String(target), ...wait(mode)]
  }
  const r = await p.run(args)
  expect(r.code, r.stderr).toBe(0)
  const now = await p.heads()
  expect((await p.record(now.at(-1)!.revision)).version).toBe(platformVersion[v])
  step(`now at ${v} (revision ${now.at(-1)!.revision})`)
}

/** The OS processes started below `pid`, from /proc (a pod's launcher runs the pod's program as its child). */
function descendants(pid: number): Array<{pid: number; cmd: string}> {
  const parent = new Map<number, number>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {
      // gone meanwhile
    }
  }
  const out: Array<{pid: number; cmd: string}> = []
  const walk = (of: number) => {
    for (const [c, pp] of parent) {
      if (pp !== of) continue
      let cmd = ''
      try {
        cmd = readFileSync(`/proc/${c}/cmdline`, 'utf8').split('\0')[0] ?? ''
      } catch {
        continue
      }
      out.push({pid: c, cmd})
      walk(c)
    }
  }
  walk(pid)
  return out
}

/**
 * Puts a finalizer on an object v1 renders and v2 does not, so that an upgrade reaching its prune
 * stage waits there (prune waits for each object it deletes to be gone) until the returned
 * function lets it go. Without it, the last stages and a prune of one object could finish, and
 * the revision be recorded deployed, before a SIGKILL sent on a "stage" line arrived (a CI run
 * lost that race once at prune).
 */
const HOLD = 'kpi.test/hold-prune'
let held: ObjectRef | undefined
async function holdAStaleObject(): Promise<() => Promise<void>> {
  if (!held) {
    const id = (o: KubeObject) => `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`
    const inV2 = new Set(renderedAll.v2!.map(id))
    const stale = renderedAll.v1!.find((o) => !inV2.has(id(o)) && !['CustomResourceDefinition', 'Namespace'].includes(o.kind) && !o.apiVersion.startsWith('kpack.io/'))
    expect(stale, 'v1 renders an object v2 does not, for the prune stage to delete').toBeDefined()
    held = refOf(stale!)
    step(`holding ${id(stale!)} with a finalizer while kpi is killed`)
  }
  const ref = held
  const withFinalizers = async (edit: (f: string[]) => string[]) => {
    const live = await p.kube.get(ref)
    if (live) await p.kube.replace({...live, metadata: {...live.metadata, finalizers: edit(live.metadata.finalizers ?? [])}})
    return live
  }
  expect(await withFinalizers((f) => [...f, HOLD]), `${describeRef(ref)} is in the cluster`).toBeDefined()
  return async () => void (await withFinalizers((f) => f.filter((x) => x !== HOLD)))
}

describe('cluster faults during upgrade and rollback', () => {
  beforeEach(() => p.nameRunDir())

  it('kpi SIGKILLed at each upgrade stage in turn, each next run finishing the one before: one version in the end', async () => {
    const ledgers: Array<{survived: () => void}> = []
    const deployedBefore = (await p.heads()).filter((h) => h.status === 'deployed').map((h) => h.revision)
    for (const stage of ['crds', 'config', 'controllers', 'platform', 'builders', 'teams', 'prune']) {
      const ledger = faultInjected(`cluster kpi SIGKILL at upgrade stage ${stage}`)
      // held at every stage: a kill on the teams line could otherwise also land after the end
      const release = await holdAStaleObject()
      const run = start(upgradeArgs('v2', 'applied'))
      let r: CliResult
      let reached: boolean
      try {
        reached = await stderrShows(run, new RegExp(`^stage ${stage}\\b(?! done)`, 'm'))
        if (reached) run.child.kill('SIGKILL')
        r = await run.done
      } finally {
        await release()
      }
      step(`upgrade killed at stage ${stage}: ${reached ? 'reached' : 'not reached'}, ${r.signal ?? `exit ${r.code}`}`, r)
      expect(reached && r.signal === 'SIGKILL', `the upgrade reached stage ${stage} and was killed there:\n${r.stderr}`).toBe(true)
      // never recorded deployed over a half-applied platform: the revision before stays the deployed one
      const heads = await p.heads()
      expect(heads.at(-1)!.status, `killed at ${stage}: the upgrade's revision is pending`).toBe('pending-upgrade')
      expect(heads.filter((h) => h.status === 'deployed').map((h) => h.revision)).toEqual(deployedBefore)
      ledgers.push(ledger)
    }
    const last = await p.run(followUp(await statusHint(), 'upgrade'))
    step(`last upgrade: exit ${last.code}`, last)
    expect(last.code, last.stderr).toBe(0)
    await oneVersion('v2')
    for (const l of ledgers) l.survived()
  }, 600_000)

  it('kpi SIGKILLed during a rollback: kpi status names the command that finishes it, and it does', async () => {
    const ledger = faultInjected('cluster kpi SIGKILL during rollback')
    const run = start(['rollback', ...wait('ready')])
    expect(await stderrShows(run, /^stage controllers\b(?! done)/m), 'the rollback reached stage controllers').toBe(true)
    run.child.kill('SIGKILL')
    const r = await run.done
    expect(r.signal).toBe('SIGKILL')
    step('rollback killed at stage controllers')
    const latest = (await p.heads()).at(-1)!
    expect(latest.status, 'the killed rollback is recorded as pending, never deployed').toBe('pending-rollback')
    expect((await p.heads()).filter((h) => h.status === 'deployed').length, 'the revision deployed before stays the deployed one').toBe(1)
    const next = followUp(await statusHint())
    const f = await p.run(next)
    step(`follow-up kpi ${next.slice(0, 2).join(' ')}: exit ${f.code}`, f)
    expect(f.code, f.stderr).toBe(0)
    expect(f.stdout).toMatch(/interrupted/)
    await oneVersion('v1')
    ledger.survived()
  }, 600_000)

  it('the kube-apiserver restarted mid-upgrade', async () => {
    const ledger = faultInjected('cluster apiserver restart during upgrade')
    const run = start(upgradeArgs('v2', 'ready'))
    expect(await stderrShows(run, /^stage controllers\b(?! done)/m), 'the upgrade reached stage controllers').toBe(true)
    await p.sb.controlPlane!.restartApiserver(2000)
    step('apiserver restarted')
    await settle(await run.done, 'upgrade during an apiserver restart', 'v1')
    ledger.survived()
  }, 600_000)

  it("kpack's controller process killed while the upgrade waits on kpack's Ready", async () => {
    await toVersion('v1', 'applied')
    const ledger = faultInjected('cluster kpack controller killed during upgrade')
    const run = start(upgradeArgs('v2', 'ready'))
    // the new controller is rolled out (stage controllers done); the platform stage waits on it
    expect(await stderrShows(run, /^stage platform\b(?! done)/m), 'the upgrade reached stage platform').toBe(true)
    const runner = p.sb.controlPlane!.podRunner!
    // What a kubelet sees when a container's process dies: the pod runner restarts it after a
    // pause, as kubelet restarts a container (podrunner.ts). The program itself is killed (v2's
    // kpack controller, now rolled out), not the launcher that holds the pod's namespaces.
    const binary = `/kpack-v${(await p.lock('v2')).kpack.version}/bin/controller`
    const pods = runner.running().filter((x) => x.name.startsWith('kpack/kpack-controller-'))
    const found = pods.map((pod) => ({pod, program: descendants(pod.pid).find((d) => d.cmd.endsWith(binary))})).find((x) => x.program)
    expect(found, `v2's kpack controller (${binary}) runs for a kpack-controller pod: ${JSON.stringify(pods.map((x) => descendants(x.pid)))}`).toBeDefined()
    const {pod, program} = found!
    // the runner's log says each start: the pod may be gone by the time the upgrade ends (a failed
    // gate rolls back to v1 and deletes v2's pod), so its restart is read there, not from running()
    const lines = (what: string) => readFileSync(runner.logFile, 'utf8').split('\n').filter((l) => l.includes(` ${what}`)).length
    const starts = () => lines(`started ${pod.name} (`)
    const gone = () => lines(`stopped ${pod.name}: the pod is gone`)
    const exits = () => lines(`${pod.name} exited (`)
    const [startsBefore, exitsBefore] = [starts(), exits()]
    process.kill(program!.pid, 'SIGKILL')
    step(`killed kpack's controller (pid ${program!.pid}, ${program!.cmd}) of ${pod.name}`)
    const r = await run.done
    // the pod runner saw it die, as a kubelet would (its launcher exits when the program does)
    await waitFor(() => exits() > exitsBefore, {what: 'the pod runner saw the kpack-controller process die', timeoutMs: 30_000}).catch(() => undefined)
    expect(exits(), `the pod runner saw the kill (${runner.logFile})`).toBeGreaterThan(exitsBefore)
    // then started it again after its pause, unless the pod was deleted first: a gate that failed
    // rolls back to v1, which deletes v2's pod, sometimes within the pause (the upgrade may also finish first)
    await waitFor(() => starts() > startsBefore || gone() > 0, {what: 'the kpack-controller process restarted by the pod runner, or its pod deleted', timeoutMs: 60_000}).catch(() => undefined)
    expect(starts() > startsBefore || gone() > 0, `the kpack-controller process was restarted or its pod deleted (${runner.logFile})`).toBe(true)
    // A restarted container is not ready at once (a kubelet's pause, then the program starts to
    // listen), and the upgrade may have ended before: kpi status then rightly says the controller
    // Deployment is not available. The platform is judged once the restart has had its time.
    await waitFor(async () => (await p.run(['status'])).code === 0, {what: 'kpi status healthy after the kpack controller restarted', timeoutMs: 90_000, intervalMs: 1000}).catch(() => undefined)
    await settle(r, 'upgrade with kpack-controller killed', 'v1')
    ledger.survived()
  }, 600_000)
})
