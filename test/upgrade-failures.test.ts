/**
 * Upgrades that fail, on the sandbox, from real causes: a controller asking more CPU than any
 * KWOK node has (the real scheduler leaves its pod Pending, the rollout gate times out, v1 comes
 * back by itself), a kpi killed with SIGKILL mid-stage on "another machine" (its lease expires,
 * `kpi status` says what was interrupted, the next upgrade finishes it), a revision record over
 * 1 MiB, --history-max, an object left by a failed upgrade whose rollback failed too, an upgrade
 * whose lease another kpi takes over, and a holder whose clock is behind. Run
 * `npm run build` first: the CLI runs from dist/.
 */
import {spawn} from 'node:child_process'
import {readlinkSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {readRevision, createRevision, deleteRevision, listRevisionHeads, saveRevision} from '../src/revision/store.js'
import type {RevisionRecord} from '../src/revision/record.js'
import type {ObjectRef} from '../src/kube/types.js'
import {readFile} from 'node:fs/promises'
import {KpiError} from '../src/errors.js'
import {rollback} from '../src/apply/rollback-action.js'
import {rollbackTarget} from '../src/apply/rollback.js'
import type {ProgressEvent} from '../src/progress/events.js'
import {MANAGED_BY, MANAGED_BY_LABEL} from '../src/render/types.js'
import type {DiffResult} from '../src/apply/diff.js'
import {expectCleanFailure, KPI_BIN, type CliResult} from './helpers/cli.js'
import {usePlatformSandbox} from './helpers/platform.js'

const p = usePlatformSandbox('upgrade-fail')
const applied = ['--wait=applied']
const controller: ObjectRef = {apiVersion: 'apps/v1', kind: 'Deployment', name: 'kpack-controller', namespace: 'kpack'}
const imageOf = async () => ((await p.kube.get(controller))!.spec as {template: {spec: {containers: Array<{image: string}>}}}).template.spec.containers[0]!.image
let values = ''

/** kpi as a process on another host (its own UTS namespace and hostname), as a laptop would run it. */
function kpiElsewhere(args: string[]): {pid: () => number | undefined; kill: () => void; done: Promise<CliResult>; stderrShows: (s: string) => Promise<void>} {
  const child = spawn('unshare', ['--uts', '--fork', 'sh', '-c', `hostname kpi-laptop && exec "$0" "$@"`, process.execPath, KPI_BIN, ...args], {
    env: {...process.env, ...p.env, NO_COLOR: '1', CI: 'true'}, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  })
  let stdout = ''
  let stderr = ''
  const waiters: Array<{s: string; resolve: () => void}> = []
  child.stdout!.on('data', (d) => (stdout += d))
  child.stderr!.on('data', (d) => {
    stderr += d
    for (const w of waiters.filter((x) => stderr.includes(x.s))) w.resolve()
  })
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({code, signal, stdout, stderr})))
  return {
    pid: () => child.pid,
    // unshare --fork waits for its child; killing the process group kills kpi itself with SIGKILL
    kill: () => process.kill(-child.pid!, 'SIGKILL'),
    done,
    stderrShows: (s) => new Promise<void>((resolve) => (stderr.includes(s) ? resolve() : waiters.push({s, resolve}))),
  }
}

describe('failed upgrades on the sandbox', {timeout: 600_000}, () => {
  it('a controller that cannot be scheduled fails its gate; v1 comes back by itself; history shows both', async () => {
    p.nameRunDir()
    const lock1 = await p.relocate('v1')
    const lock2 = await p.relocate('v2')
    values = await p.values('values')
    const inst = await p.run(['install', '-b', lock1, '-f', values, '--ca-cert', p.sb.caFile, ...applied])
    expect(inst.code, inst.stderr).toBe(0)
    const v1Image = await imageOf()
    const greedy = await p.values('values-greedy', {controller: {resources: {requests: {cpu: '64'}}}})
    const t0 = Date.now()
    // no node has 64 cores: the gate fails on that, not at the end of its 5 minutes
    const r = await p.run(['upgrade', '-b', lock2, '-f', greedy, '--ca-cert', p.sb.caFile, ...applied, '--timeout', '5m'])
    const line = expectCleanFailure(r)
    expect(r.code).toBe(12)
    expect(line).toMatch(/^Error: upgrade to 1\.1\.0 failed at stage controllers \(revision 2\): stage controllers: Deployment kpack\/kpack-controller failed: pod kpack-controller-\S+ can never be scheduled: it requests cpu 64, more than any of the 2 nodes allocates \(at most 4, on kwok-node-\d\); recent events: /)
    expect(line).not.toContain('was not ready after')
    // preflight saw it coming and said so, before anything changed
    expect(r.stderr).toMatch(/warning: Deployment kpack\/kpack-controller: no node can run its pods: it requests cpu 64, more than any of the 2 nodes allocates \(at most 4, on kwok-node-\d\); its stage will fail unless an autoscaler adds a node that large/)
    expect(inst.stderr).not.toContain('no node can run')
    expect(line).toMatch(/FailedScheduling: 0\/2 nodes are available: 2 Insufficient cpu/)
    expect(line).toContain('rolled back by itself to revision 1 (1.0.0, recorded as revision 3), which is healthy')
    expect(r.stderr).toContain('warning: upgrade failed at stage controllers: rolling back to revision 1 (1.0.0)')
    console.log(`upgrade started to healthy v1: ${((Date.now() - t0) / 1000).toFixed(1)}s`)
    expect(await imageOf()).toBe(v1Image)
    const st = await p.run(['status'])
    expect(st.code, st.stdout).toBe(0)
    expect(st.stdout).toMatch(/revision 3, deployed \(rollback\)/)
    const rows = (JSON.parse((await p.run(['history', '--json'])).stdout) as {revisions: Array<{revision: number; status: string; description: string; message?: string}>}).revisions
    expect(rows.map((x) => [x.revision, x.status, x.description])).toEqual([
      [1, 'superseded', 'install 1.0.0'], [2, 'failed', 'upgrade 1.0.0 -> 1.1.0'], [3, 'deployed', 'rollback to 1 (automatic: revision 2 failed at stage controllers)'],
    ])
    expect(rows[1]!.message).toMatch(/can never be scheduled: it requests cpu 64/)
  })

  it('kpi killed (SIGKILL) mid-stage on another machine: a second upgrade is refused while its lease lives; then status says it was interrupted and the next upgrade finishes it', async () => {
    p.nameRunDir()
    const lock2 = await p.relocate('v2')
    const args = ['upgrade', '-b', lock2, '-f', values, '--ca-cert', p.sb.caFile, ...applied, '--lease-duration', '25s']
    const far = kpiElsewhere(args)
    await far.stderrShows('stage controllers:')
    far.kill()
    const killed = await far.done
    expect(killed.signal ?? killed.code).toBeTruthy()
    const running = await p.run(['status'])
    expect(running.stdout, running.stdout).toMatch(/upgrade in progress: kpi upgrade \(pid \d+ on kpi-laptop\) since /)
    // the holder's PID namespace goes with its pid: only a process in it may judge the pid gone
    const held = await p.kube.get({apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'kpi-operation', namespace: 'kpi-system'})
    expect(held!.metadata.annotations?.['kpi.dev/holder-pid-namespace']).toBe(readlinkSync('/proc/self/ns/pid'))
    const busy = await p.run(args)
    expect(busy.code).toBe(9)
    expect(expectCleanFailure(busy)).toMatch(/^Error: another kpi operation is running: upgrade by kpi upgrade \(pid \d+ on kpi-laptop\) since \S+ \(lease kpi-system\/kpi-operation, last renewed \S+\): wait for it to finish/)
    // the lease expires 25s after its last renewal
    let st = running
    for (let i = 0; i < 90 && !st.stdout.includes('interrupted:'); i++) {
      await new Promise((r) => setTimeout(r, 500))
      st = await p.run(['status'])
    }
    expect(st.code).toBe(11)
    expect(st.stdout, st.stdout).toMatch(/ {2}interrupted: upgrade 1\.0\.0 -> 1\.1\.0 \(revision 4\) stopped during stage controllers: its kpi process died \(expired at \S+ \(not renewed for 25s\)\)/)
    expect(st.stdout).toContain('  finish it with: kpi upgrade -b LOCK -f VALUES (the same lock finishes it), or kpi rollback 3')
    const again = await p.run(args)
    expect(again.code, again.stderr).toBe(0)
    expect(again.stderr).toMatch(/warning: took over the operation lease from kpi upgrade \(pid \d+ on kpi-laptop\)/)
    expect(again.stdout).toMatch(/^Upgraded build-service 1\.0\.0 \(kpack 0\.16\.1, revision 3\) to 1\.1\.0 \(kpack \S+\) as revision 5 in /)
    expect(again.stdout).toContain('revision 4 had been interrupted; recorded as failed')
    expect(await imageOf()).toBe((await p.lock('v2')).kpack.images.controller)
    const four = await p.record(4)
    expect(four.status).toBe('failed')
    expect(four.message).toMatch(/^interrupted: the upgrade stopped during stage controllers \(its kpi process died\); finished by revision 5/)
    const ok = await p.run(['status'])
    expect(ok.code, ok.stdout).toBe(0)
  })

  it('a revision record over 1 MiB is stored across several Secrets and reads back whole', async () => {
    p.nameRunDir()
    const base = await p.record(5)
    const big = Array.from({length: 300_000}, () => Math.random().toString(36).slice(2)).join('')
    const record: RevisionRecord = {...base, revision: 90, status: 'superseded', objects: [...base.objects, {stage: 'config', object: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'big', labels: {}}, data: {big}}}]}
    const stored = await createRevision(p.kube, record)
    expect(stored.parts).toBeGreaterThanOrEqual(2)
    const back = await readRevision(p.kube, 90)
    expect(back!.record).toEqual(record)
    const partSecrets = async () => (await p.kube.list('v1', 'Secret', {namespace: 'kpi-system', labelSelector: 'kpi.dev/record=revision-part'})).length
    expect(await partSecrets()).toBe(stored.parts - 1)
    // another operation writing the same revision loses the race for its Secret and leaves the record whole
    const big2 = Array.from({length: 300_000}, () => Math.random().toString(36).slice(2)).join('')
    const other: RevisionRecord = {...record, status: 'failed', objects: [...base.objects, {stage: 'config', object: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'big', labels: {}}, data: {big: big2}}}]}
    await expect(createRevision(p.kube, other)).rejects.toThrow(/^revision 90 already exists: another kpi operation is running or just ran$/)
    expect((await readRevision(p.kube, 90))!.record).toEqual(record)
    await expect(saveRevision(p.kube, {...stored, resourceVersion: '1'}, other)).rejects.toThrow(/^revision 90 was changed by another kpi operation while this one ran$/)
    expect((await readRevision(p.kube, 90))!.record).toEqual(record)
    expect(await partSecrets()).toBe(stored.parts - 1)
    // a write that wins replaces the parts of the one before
    const saved = await saveRevision(p.kube, stored, other)
    expect((await readRevision(p.kube, 90))!.record).toEqual(other)
    expect(await partSecrets()).toBe(saved.parts - 1)
    await deleteRevision(p.kube, 90)
    expect((await listRevisionHeads(p.kube)).map((h) => h.revision)).toEqual([1, 2, 3, 4, 5])
    expect((await p.kube.list('v1', 'Secret', {namespace: 'kpi-system', labelSelector: 'kpi.dev/record=revision-part'})).length).toBe(0)
  })

  it('--history-max keeps the newest revisions and the deployed one', async () => {
    p.nameRunDir()
    const r = await p.run(['rollback', ...applied, '--history-max', '2'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout, r.stdout + r.stderr).toMatch(/^Rolled back to revision 3: build-service 1\.0\.0 .* recorded as revision 6/)
    expect(r.stderr).toContain('history: removed revisions 1, 2, 3, 4 (--history-max 2)')
    expect((await listRevisionHeads(p.kube)).map((h) => [h.revision, h.status])).toEqual([[5, 'superseded'], [6, 'deployed']])
    for (const o of p.outputs) expect(o).not.toContain(p.sb.airgap.password!)
  })

  it('an object only a failed upgrade applied, whose automatic rollback failed too, is deleted by the next operation', async () => {
    p.nameRunDir()
    // the history such a pair leaves: revision 7, an upgrade that applied a ConfigMap and failed;
    // revision 8, its rollback, whose record lists only its target's objects, failed before it
    // deleted anything. Revision 6 stays the deployed one. (Two gates failing in a row on purpose
    // is not something the sandbox can be made to do reliably; the records are what kpi reads.)
    const six = await p.record(6)
    const leftover = {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'kpi-leftover', namespace: 'kpack', labels: {[MANAGED_BY_LABEL]: MANAGED_BY}}, data: {from: 'revision 7'}}
    const stage = six.objects.find((o) => o.object.kind === 'ConfigMap')!.stage
    await p.kube.apply(leftover)
    await createRevision(p.kube, {...six, revision: 7, previousRevision: 6, operation: 'upgrade', status: 'failed', description: 'upgrade (failed)', objects: [...six.objects, {stage, object: leftover}]})
    await createRevision(p.kube, {...six, revision: 8, previousRevision: 6, operation: 'rollback', status: 'failed', description: 'rollback to 6 (automatic: revision 7 failed)', objects: six.objects})
    const lock1 = await p.relocate('v1')
    const d = await p.run(['diff', '-b', lock1, '-f', values, '--ca-cert', p.sb.caFile, '--json'])
    expect(d.code, d.stderr).toBe(1)
    expect((JSON.parse(d.stdout) as DiffResult).stages.flatMap((x) => x.removed)).toEqual(['ConfigMap kpack/kpi-leftover'])
    const r = await p.run(['upgrade', '-b', lock1, '-f', values, '--ca-cert', p.sb.caFile, ...applied, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({revision: 9, pruned: ['ConfigMap kpack/kpi-leftover']})
    expect(await p.kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-leftover', namespace: 'kpack'})).toBeUndefined()
  })

  it('an upgrade whose lease another kpi takes over stops where it is: no automatic rollback, no revision written for one', async () => {
    p.nameRunDir()
    const lock2 = await p.relocate('v2')
    // a gate that does not pass (no node has 64 cores), so the upgrade is still in it when the lease goes
    const greedy = await p.values('values-greedy-lease', {controller: {resources: {requests: {cpu: '64'}}}})
    const up = kpiElsewhere(['upgrade', '-b', lock2, '-f', greedy, '--ca-cert', p.sb.caFile, ...applied, '--timeout', '5m', '--lease-duration', '3s'])
    await up.stderrShows('stage controllers:')
    // another kpi takes the lease, as one does after this one's renewals failed for its duration
    const ref = {apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'kpi-operation', namespace: 'kpi-system'}
    const lease = (await p.kube.get(ref))!
    const renewTime = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
    await p.kube.replace({...lease, spec: {...(lease.spec as object), holderIdentity: 'kpi upgrade (pid 7 on another-host)', renewTime, leaseDurationSeconds: 60}})
    const r = await up.done
    const line = expectCleanFailure(r)
    expect(r.code, r.stderr).toBe(9)
    expect(line).toMatch(/^Error: upgrade to 1\.1\.0 stopped at stage controllers \(revision 10\): .*lost the operation lease kpi-system\/kpi-operation: kpi upgrade \(pid 7 on another-host\) took it over.*; not rolled back: the operation that holds the lease now decides/)
    expect(r.stderr).not.toContain('rolling back')
    expect((await listRevisionHeads(p.kube)).slice(-2).map((h) => [h.revision, h.status])).toEqual([[9, 'deployed'], [10, 'failed']])
    await p.kube.replace({...(await p.kube.get(ref))!, spec: {leaseDurationSeconds: 60, leaseTransitions: 0}})
  })

  it('a holder whose clock is behind, so that its renewals look expired, is not taken over while it renews', async () => {
    p.nameRunDir()
    const ref = {apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'kpi-operation', namespace: 'kpi-system'}
    const micro = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
    // ten minutes behind: every renewal it writes is long expired by this machine's clock
    const behind = () => new Date(Date.now() - 600_000)
    const since = behind()
    const renew = async () => {
      const l = (await p.kube.get(ref))!
      await p.kube.replace({...l, metadata: {...l.metadata, annotations: {'kpi.dev/operation': 'upgrade'}}, spec: {holderIdentity: 'kpi upgrade (pid 9 on skewed-host)', leaseDurationSeconds: 3, acquireTime: micro(since), renewTime: micro(behind())}})
    }
    await renew()
    // it renews every third of its duration, as kpi does
    let renewing: Promise<void> = Promise.resolve()
    const timer = setInterval(() => (renewing = renew().catch(() => {})), 1000)
    try {
      const lock2 = await p.relocate('v2')
      const r = await p.run(['upgrade', '-b', lock2, '-f', values, '--ca-cert', p.sb.caFile, ...applied])
      const line = expectCleanFailure(r)
      expect(r.code, r.stderr).toBe(9)
      expect(r.stderr).toContain('the operation lease of kpi upgrade (pid 9 on skewed-host) looks expired (expired at ')
      expect(line).toMatch(/^Error: another kpi operation is running: upgrade by kpi upgrade \(pid 9 on skewed-host\) since /)
    } finally {
      clearInterval(timer)
      // a renewal still in flight would change the lease between the read and the write below
      await renewing
    }
    await p.kube.replace({...(await p.kube.get(ref))!, spec: {leaseDurationSeconds: 60, leaseTransitions: 0}})
  })
  it('a revision deployed whose bookkeeping then fails (the history trim refused) is reported deployed, with a warning saying what is left for the next operation', async () => {
    p.nameRunDir()
    const before = await listRevisionHeads(p.kube)
    const last = before.at(-1)!.revision
    const deployed = before.filter((h) => h.status === 'deployed').at(-1)!.revision
    // every delete in kpi-system is refused, as by an API server that went away after the record was written
    const kube = {...p.kube, delete: async (ref: ObjectRef) => {
      if (ref.namespace === 'kpi-system') throw new KpiError('network', `cannot reach the Kubernetes API at ${p.kube.server} (ECONNREFUSED)`)
      return p.kube.delete(ref)
    }}
    const events: ProgressEvent[] = []
    const r = await rollback({
      kube, revision: deployed, wait: 'applied', kpiVersion: 'test', historyMax: 1, onEvent: (e) => events.push(e),
      registryOptions: {caCerts: [await readFile(p.sb.caFile, 'utf8')]},
    })
    expect(r.revision).toBe(last + 1)
    const warning = events.filter((e) => e.type === 'warning').map((e) => e.message).find((m) => m?.includes('trimming the history'))
    expect(warning).toBe(`revision ${last + 1} is deployed, but marking the revisions before it superseded and trimming the history failed: cannot reach the Kubernetes API at ${p.kube.server} (ECONNREFUSED); the next kpi operation does both`)
    const after = await listRevisionHeads(p.kube)
    expect(after.map((h) => h.revision)).toEqual([...before.map((h) => h.revision), last + 1])
    expect(after.filter((h) => h.status === 'deployed').map((h) => h.revision)).toEqual([last + 1])
    // the next operation trims what this one could not
    const again = await p.run(['rollback', String(deployed), ...applied, '--history-max', '2'])
    expect(again.code, again.stderr).toBe(0)
    expect((await listRevisionHeads(p.kube)).map((h) => h.revision)).toEqual([last + 1, last + 2])
  })
  it('--no-rollback leaves a failed upgrade as it is; a bare kpi rollback then puts the deployed revision back', async () => {
    p.nameRunDir()
    const lock2 = await p.relocate('v2')
    const greedy = await p.values('values-greedy-kept', {controller: {resources: {requests: {cpu: '64'}}}})
    const deployed = (await listRevisionHeads(p.kube)).filter((h) => h.status === 'deployed').at(-1)!.revision
    const image = await imageOf()
    const r = await p.run(['upgrade', '-b', lock2, '-f', greedy, '--ca-cert', p.sb.caFile, ...applied, '--no-rollback'])
    const line = expectCleanFailure(r)
    expect(r.code).toBe(11)
    const failed = deployed + 1
    expect(line).toMatch(new RegExp(`^Error: upgrade to 1\\.1\\.0 failed at stage controllers \\(revision ${failed}, left as it is: --no-rollback\\): `))
    expect(line).toContain(`kpi rollback ${deployed}`)
    expect(r.stderr).not.toContain('rolling back')
    expect(await imageOf(), 'the failed revision\'s controller is what runs now').not.toBe(image)
    const back = await p.run(['rollback', ...applied])
    expect(back.code, back.stderr).toBe(0)
    // the failed upgrade may have replaced the deployed revision's pods: its images are asked for, not taken as running
    expect(Number(/(\d+) images present/.exec(back.stdout + back.stderr)?.[1])).toBeGreaterThan(10)
    expect(back.stdout).toMatch(new RegExp(`^Rolled back to revision ${deployed}: .* recorded as revision ${failed + 1}`))
    expect(await imageOf()).toBe(image)
    expect((await listRevisionHeads(p.kube)).slice(-3).map((h) => [h.revision, h.status])).toEqual([[deployed, 'superseded'], [failed, 'failed'], [failed + 1, 'deployed']])
  })
  it('a bare kpi rollback goes to the revision before the deployed one even when that one is still labelled deployed (its superseding failed)', async () => {
    p.nameRunDir()
    const heads = await listRevisionHeads(p.kube)
    const last = heads.at(-1)!.revision
    const rec = await p.record(last)
    // what a deploy whose bookkeeping failed leaves: the one before it still says deployed
    await createRevision(p.kube, {...rec, revision: last + 1, status: 'deployed', description: 'left deployed'})
    await createRevision(p.kube, {...rec, revision: last + 2, status: 'deployed', description: 'the newest'})
    try {
      expect((await rollbackTarget(p.kube, undefined)).record.revision).toBe(last + 1)
    } finally {
      await deleteRevision(p.kube, last + 2)
      await deleteRevision(p.kube, last + 1)
    }
  })
})
