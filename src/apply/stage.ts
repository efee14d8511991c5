/**
 * Runs one install stage: apply its objects (server-side apply, field manager `kpi`), then wait
 * until each is ready by its check, within the stage's timeout.
 *
 * What changed is told by a server-side dry run of each apply compared with the live object, so a
 * controller writing status meanwhile is not taken for a change, and unchanged objects are not written.
 */
import {KpiError, isKpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import {sameObject} from '../kube/compare.js'
import {crdProbe, deploymentProbe, endpointsProbe, kpackProbe, waitUntil, type Probe, type WaitOutcome} from '../kube/wait.js'
import {describeRef, formatCondition, refOf, type KubeEvent, type LiveObject} from '../kube/types.js'
import type {OnEvent} from '../progress/events.js'
import type {WaitMode} from '../revision/record.js'
import type {PlannedObject, PlannedStage} from './plan.js'

export type ChangeAction = 'created' | 'changed' | 'unchanged'

export interface ObjectChange {
  object: string
  action: ChangeAction
}

export interface StageResult {
  name: string
  objects: number
  changes: ObjectChange[]
  /** fields taken over from other field managers, one line per object */
  conflicts: string[]
  /** kpack resources whose readiness was not checked (--wait=applied) */
  notChecked: string[]
  durationMs: number
}

export interface StageRunOptions {
  kube: Kube
  wait: WaitMode
  timeoutMs: number
  onEvent: OnEvent
  /** apply with force from the start (adopting objects another tool made) */
  force?: boolean
  concurrency?: number
  signal?: AbortSignal
}

async function parallel<T>(items: T[], limit: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0
  let failed: unknown
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const x = items[next++]!
      try {
        await f(x)
      } catch (e) {
        failed ??= e
      }
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
  if (failed !== undefined) throw failed
}

const conflictLine = (name: string, e: KpiError): string =>
  // "Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas"
  `${name}: took over fields from another manager: ${e.message.slice(name.length + 2).replace(/^Apply failed with \d+ conflicts?: /, '')}`

const isConflict = (e: unknown): e is KpiError => isKpiError(e) && e.kind === 'conflict'

/**
 * Apply one object. A new one is simply applied. An existing one is first applied as a server-side
 * dry run and compared with the live object (compare.ts): when nothing would change, nothing is
 * written. On a field conflict, say whose fields they were and take them.
 */
async function applyOne(kube: Kube, o: PlannedObject, force: boolean): Promise<{change: ObjectChange; conflict?: string}> {
  const obj = o.object as unknown as LiveObject
  const name = describeRef(obj)
  const before = await kube.get(refOf(obj))
  if (!before) {
    await kube.apply(obj, {force})
    return {change: {object: name, action: 'created'}}
  }
  let conflict: string | undefined
  let preview: LiveObject
  try {
    preview = await kube.apply(obj, {force, dryRun: true})
  } catch (e) {
    if (force || !isConflict(e)) throw e
    conflict = conflictLine(name, e)
    preview = await kube.apply(obj, {force: true, dryRun: true})
  }
  if (!conflict && sameObject(before, preview)) return {change: {object: name, action: 'unchanged'}}
  await kube.apply(obj, {force: force || !!conflict})
  return {change: {object: name, action: 'changed'}, conflict}
}

function probeFor(kube: Kube, o: PlannedObject): Probe | undefined {
  const ref = refOf(o.object as unknown as LiveObject)
  switch (o.check) {
    case 'established': return crdProbe(kube, ref)
    case 'rollout': return deploymentProbe(kube, ref)
    case 'endpoints': return endpointsProbe(kube, ref)
    case 'kpack-ready': return kpackProbe(kube, ref)
    default: return undefined
  }
}

const checkTitle: Record<string, string> = {
  established: 'established',
  rollout: 'rolled out',
  endpoints: 'has ready endpoints',
  'kpack-ready': 'Ready',
}

/** Recent events of the object, and for a Deployment those of its pods too (scheduling, image pulls). */
async function recentEvents(kube: Kube, live: LiveObject | undefined): Promise<KubeEvent[]> {
  if (!live) return []
  try {
    const events = await kube.events(live, 5)
    if (live.kind === 'Deployment') {
      const match = (live.spec as {selector?: {matchLabels?: Record<string, string>}} | undefined)?.selector?.matchLabels ?? {}
      const selector = Object.entries(match).map(([k, v]) => `${k}=${v}`).join(',')
      if (selector) {
        const pods = await kube.list('v1', 'Pod', {namespace: live.metadata.namespace, labelSelector: selector})
        for (const p of pods.slice(0, 3)) events.push(...(await kube.events(p, 3)))
      }
    }
    return events.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0)).slice(-6)
  } catch {
    return []
  }
}

const formatEvents = (events: KubeEvent[]): string =>
  events.length ? `; recent events: ${events.map((e) => `${e.object}: ${e.reason}: ${e.message}${e.count > 1 ? ` (x${e.count})` : ''}`).join('; ')}` : '; no events'

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  const rest = Math.round(s - m * 60)
  return rest ? `${m}m${rest}s` : `${m}m`
}

export async function runStage(stage: PlannedStage, opts: StageRunOptions): Promise<StageResult> {
  const {kube, onEvent} = opts
  const started = Date.now()
  const deadline = started + opts.timeoutMs
  const changes: ObjectChange[] = []
  const conflicts: string[] = []
  const limit = opts.concurrency ?? 8

  const applyTask = `apply ${stage.objects.length} object${stage.objects.length === 1 ? '' : 's'}`
  onEvent({type: 'task', stage: stage.name, task: applyTask, status: 'start'})
  for (const wave of [0, 1]) {
    const objs = stage.objects.filter((o) => o.wave === wave)
    await parallel(objs, limit, async (o) => {
      opts.signal?.throwIfAborted()
      const r = await applyOne(kube, o, opts.force ?? false)
      changes.push(r.change)
      if (r.conflict) {
        conflicts.push(r.conflict)
        onEvent({type: 'warning', message: r.conflict})
      }
    })
    // a namespace or CRD must be usable before the objects of the next wave go in
    if (wave === 0) await waitAll(stage, objs.filter((o) => o.check === 'established'), opts, deadline)
  }
  const created = changes.filter((c) => c.action === 'created').length
  const changed = changes.filter((c) => c.action === 'changed').length
  onEvent({type: 'task', stage: stage.name, task: applyTask, status: 'done', message: `${created} created, ${changed} changed, ${changes.length - created - changed} unchanged`})

  const notChecked: string[] = []
  const waits = stage.objects.filter((o) => o.wave === 1 && o.check !== 'applied').filter((o) => {
    if (o.check === 'kpack-ready' && opts.wait === 'applied') {
      notChecked.push(describeRef(o.object))
      return false
    }
    return true
  })
  await waitAll(stage, waits, opts, deadline)
  // stable order for reports: the render order
  const order = new Map(stage.objects.map((o, i) => [describeRef(o.object), i]))
  changes.sort((a, b) => order.get(a.object)! - order.get(b.object)!)
  return {name: stage.name, objects: stage.objects.length, changes, conflicts, notChecked, durationMs: Date.now() - started}
}

/** Wait for every object's check in parallel; the first failure or the deadline ends the stage. */
async function waitAll(stage: PlannedStage, objs: PlannedObject[], opts: StageRunOptions, deadline: number): Promise<void> {
  if (!objs.length) return
  const {kube, onEvent} = opts
  const abort = new AbortController()
  const onOuter = () => abort.abort(opts.signal!.reason)
  opts.signal?.addEventListener('abort', onOuter, {once: true})
  const outcomes: Array<{o: PlannedObject; r: WaitOutcome}> = []
  try {
    await Promise.all(objs.map(async (o) => {
      const name = describeRef(o.object)
      const task = `${name} ${checkTitle[o.check]}`
      onEvent({type: 'task', stage: stage.name, task, status: 'start'})
      const r = await waitUntil(probeFor(kube, o)!, {
        timeoutMs: Math.max(0, deadline - Date.now()),
        signal: abort.signal,
        onChange: (x) => {
          if (x.state === 'progressing') onEvent({type: 'task', stage: stage.name, task, status: 'start', message: x.message})
        },
      })
      outcomes.push({o, r})
      if (r.outcome === 'ready') {
        onEvent({type: 'task', stage: stage.name, task, status: 'done', message: r.readiness.message})
        return
      }
      onEvent({type: 'task', stage: stage.name, task, status: 'failed', message: r.readiness.message})
      if (r.outcome === 'failed') {
        // the others need not run on: this stage has failed
        abort.abort(new KpiError('failed', `${name} is not ready: ${r.readiness.message}`))
        throw await failure(kube, o, r, stage)
      }
    }))
  } catch (e) {
    if (isKpiError(e)) throw e
    if (abort.signal.aborted && isKpiError(abort.signal.reason)) {
      const first = outcomes.find((x) => x.r.outcome === 'failed')
      if (first) throw await failure(kube, first.o, first.r, stage)
      throw abort.signal.reason
    }
    throw e
  } finally {
    opts.signal?.removeEventListener('abort', onOuter)
  }
  const late = outcomes.filter((x) => x.r.outcome === 'timeout')
  if (late.length) throw await timeoutError(kube, late, stage, opts.timeoutMs)
}

async function failure(kube: Kube, o: PlannedObject, r: WaitOutcome, stage: PlannedStage): Promise<KpiError> {
  const name = describeRef(o.object)
  if (o.check === 'kpack-ready') {
    return new KpiError('failed', `stage ${stage.name}: ${name} is not ready: kpack says: ${r.readiness.message}`, {
      hint: `see kubectl get ${o.object.kind.toLowerCase()} ${o.object.metadata.name}${o.object.metadata.namespace ? ` -n ${o.object.metadata.namespace}` : ''} -o yaml; fix the cause, then run kpi install again`,
    })
  }
  const events = await recentEvents(kube, r.live)
  return new KpiError('failed', `stage ${stage.name}: ${name} failed: ${r.readiness.message}${formatEvents(events)}`, {
    hint: 'fix the cause, then run kpi install again (it resumes)',
  })
}

async function timeoutError(kube: Kube, late: Array<{o: PlannedObject; r: WaitOutcome}>, stage: PlannedStage, timeoutMs: number): Promise<KpiError> {
  const parts: string[] = []
  for (const {o, r} of late) {
    const events = await recentEvents(kube, r.live)
    const cond = r.readiness.condition ? `; last condition ${formatCondition(r.readiness.condition)}` : ''
    parts.push(`${describeRef(o.object)}: ${r.readiness.message}${cond}${formatEvents(events)}`)
  }
  return new KpiError('timeout', `stage ${stage.name} was not ready after ${formatDuration(timeoutMs)}: ${parts.join(' | ')}`, {
    hint: 'give more time with --timeout, or fix the cause and run kpi install again (it resumes)',
  })
}
