/**
 * Runs one stage: decide each object's change (changeset.ts), apply the creates and updates
 * (server-side apply, field manager `kpi`; unchanged objects are not written), then gate: wait
 * until every object is ready by its check (kube/checks.ts), within the stage's timeout.
 *
 * Objects go in two waves: namespaces and CRDs first, established before the rest is decided,
 * since the rest may live in them or be of their kinds.
 */
import {KpiError, isKpiError} from '../errors.js'
import {FIELD_MANAGER, type Kube} from '../kube/client.js'
import {CHECKS, probeFor} from '../kube/checks.js'
import {waitUntil, type WaitOutcome} from '../kube/wait.js'
import {watchWakeups} from '../kube/wake.js'
import {MANAGED_BY, MANAGED_BY_LABEL} from '../render/types.js'
import {describeRef, formatCondition, podSelectorOf, type Condition, type KubeEvent, type LiveObject} from '../kube/types.js'
import type {OnEvent} from '../progress/events.js'
import type {KubeObject} from '../render/types.js'
import type {WaitMode} from '../revision/record.js'
import {decide, inFreshNamespace, type Change} from './changeset.js'
import type {PlannedObject, PlannedStage} from './plan.js'
import {mapLimit} from '../pool.js'
import type {Applied} from './untouched.js'

export interface StageResult {
  name: string
  title: string
  objects: number
  changes: Change[]
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
  /** what the user runs after fixing the cause: `kpi install again (it resumes)` */
  retry?: string
  /** objects written whole with the desired spec instead of applied (changeset.ts decide()) */
  replaceSpec?: (o: KubeObject) => boolean
  /** what the deployed revision applied, when it is the latest: untouched.ts */
  applied?: Applied
  /** namespaces this operation created, filled in as it does (changeset.ts inFreshNamespace) */
  fresh?: Set<string>
}

/** One object a gate found not ready: what `kpi upgrade` names when it fails. */
export interface GateProblem {
  object: string
  message: string
  condition?: Condition
  events: KubeEvent[]
}

export interface GateFailureDetails {
  stage: string
  outcome: 'failed' | 'timeout'
  problems: GateProblem[]
}

/** The gate failure a stage error carries (KpiError details `{source: 'other', gate}`). */
export const gateFailureOf = (e: unknown): GateFailureDetails | undefined => {
  const d = isKpiError(e) ? e.details : undefined
  return d && (d.source === 'other' || d.source === undefined) && d.gate ? (d.gate as GateFailureDetails) : undefined
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  const rest = Math.round(s - m * 60)
  return rest ? `${m}m${rest}s` : `${m}m`
}

async function applyChange(kube: Kube, c: Change, force: boolean): Promise<void> {
  if (c.replacement) await replaceSpec(kube, c)
  else if (c.action === 'create' || c.action === 'update') await kube.apply(c.desired!, {force: force || !!c.conflict || !!c.takeOwn})
}

/** PUT the live object with the desired spec; kpack writing status meanwhile (a new resourceVersion) is retried. */
async function replaceSpec(kube: Kube, c: Change): Promise<void> {
  const written = await retryConflicts(async (attempt) => {
    const live = attempt === 1 ? c.replacement! : await kube.get(c.ref)
    return live && kube.replace({...live, metadata: {...live.metadata, labels: {...live.metadata.labels, ...c.desired!.metadata.labels}}, spec: c.desired!.spec})
  })
  if (!written) return
  await retryConflicts(async (attempt) => {
    const live = attempt === 1 ? written : await kube.get(c.ref)
    const handed = live && appliedOwnership(live)
    return handed && kube.replace(handed)
  })
}

/** `f` again while it meets a conflict (another writer between its read and its write), up to 5 times. */
async function retryConflicts<T>(f: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await f(attempt)
    } catch (e) {
      if (!(isKpiError(e) && e.kind === 'conflict') || attempt >= 5) throw e
    }
  }
}

interface ManagedEntry {
  manager?: string
  operation?: string
  subresource?: string
  time?: string
  fieldsV1?: Record<string, unknown>
}

/** The union of two managedFields field sets (fieldsV1: a trie of JSON objects). */
function unionFields(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {...a}
  for (const [k, v] of Object.entries(b)) {
    const had = out[k]
    out[k] = had && typeof had === 'object' && v && typeof v === 'object' ? unionFields(had as Record<string, unknown>, v as Record<string, unknown>) : v
  }
  return out
}

/**
 * A PUT makes the fields it changed kpi's by an Update (managedFields operation Update), no longer
 * by its apply: the next upgrade's apply, leaving one of them out, would not remove it, yet would
 * remove the fields beside it it still owned (serviceAccountRef.namespace gone, .name kept: the
 * object refused as invalid, the upgrade failed). So the PUT's fields go to kpi's apply entry, as
 * kubectl hands fields from an Update manager to an apply one (csaupgrade): the next apply keeps,
 * changes or removes them as any it applied. The object with its managedFields rewritten, or
 * undefined when kpi has no Update entry on it.
 */
function appliedOwnership(live: LiveObject): LiveObject | undefined {
  const entries = ((live.metadata as {managedFields?: ManagedEntry[]}).managedFields ?? [])
  const update = entries.find((m) => m.manager === FIELD_MANAGER && m.operation === 'Update' && !m.subresource)
  if (!update) return undefined
  const apply = entries.find((m) => m.manager === FIELD_MANAGER && m.operation === 'Apply' && !m.subresource)
  const merged: ManagedEntry = apply
    ? {...apply, time: update.time ?? apply.time, fieldsV1: unionFields(apply.fieldsV1 ?? {}, update.fieldsV1 ?? {})}
    : {...update, operation: 'Apply'}
  const managedFields = [...entries.filter((m) => m !== update && m !== apply), merged]
  return {...live, metadata: {...live.metadata, managedFields} as LiveObject['metadata']}
}

export async function runStage(stage: PlannedStage, opts: StageRunOptions): Promise<StageResult> {
  const {kube, onEvent} = opts
  const started = Date.now()
  const deadline = started + opts.timeoutMs
  const changes: Change[] = []
  const conflicts: string[] = []
  const limit = opts.concurrency ?? 8
  const force = opts.force ?? false

  const applyTask = `apply ${stage.objects.length} object${stage.objects.length === 1 ? '' : 's'}`
  onEvent({type: 'task', stage: stage.name, task: applyTask, status: 'start'})
  for (const wave of [0, 1]) {
    const objs = stage.objects.filter((o) => o.wave === wave)
    await mapLimit(objs, limit, async (o) => {
      opts.signal?.throwIfAborted()
      const replace = opts.replaceSpec?.(o.object) ?? false
      let c = await decide(kube, o, force, replace, opts.applied, opts.fresh)
      try {
        await applyChange(kube, c, force)
      } catch (e) {
        // taken for new in a namespace just made, it was there after all (someone else's): decided as any other
        if (!(inFreshNamespace(o, opts.fresh) && isKpiError(e) && e.kind === 'conflict')) throw e
        c = await decide(kube, o, force, replace, opts.applied)
        await applyChange(kube, c, force)
      }
      if (c.action === 'create' && c.ref.kind === 'Namespace') opts.fresh?.add(c.ref.name)
      changes.push(c)
      if (c.conflict) {
        const line = `${c.object}: took over fields from another manager: ${c.conflict}`
        conflicts.push(line)
        onEvent({type: 'warning', message: line})
      }
    })
    // a namespace or CRD must be usable before the objects of the next wave go in
    if (wave === 0) await gate(stage, objs.filter((o) => o.check === 'established'), opts, deadline)
  }
  const n = (a: Change['action']) => changes.filter((c) => c.action === a).length
  onEvent({type: 'task', stage: stage.name, task: applyTask, status: 'done', message: `${n('create')} created, ${n('update')} changed, ${n('unchanged')} unchanged`})

  const notChecked: string[] = []
  const waits = stage.objects.filter((o) => o.wave === 1 && o.check !== 'applied').filter((o) => {
    if (o.check === 'kpack-ready' && opts.wait === 'applied') {
      notChecked.push(describeRef(o.object))
      return false
    }
    return true
  })
  // a Service's endpoints are judged once the Deployments behind it rolled out: before, the old
  // pods' endpoints are ready and would pass for the new ones
  await gate(stage, waits.filter((o) => o.check !== 'endpoints'), opts, deadline)
  await gate(stage, waits.filter((o) => o.check === 'endpoints'), opts, deadline)
  // stable order for reports: the render order
  const order = new Map(stage.objects.map((o, i) => [describeRef(o.object), i]))
  changes.sort((a, b) => order.get(a.object)! - order.get(b.object)!)
  return {name: stage.name, title: stage.title, objects: stage.objects.length, changes, conflicts, notChecked, durationMs: Date.now() - started}
}

/** Wait for every object's check in parallel; the first failure or the deadline ends the stage. */
async function gate(stage: PlannedStage, objs: PlannedObject[], opts: StageRunOptions, deadline: number): Promise<void> {
  if (!objs.length) return
  const {kube, onEvent} = opts
  const abort = new AbortController()
  const onOuter = () => abort.abort(opts.signal!.reason)
  opts.signal?.addEventListener('abort', onOuter, {once: true})
  const outcomes: Array<{o: PlannedObject; r: WaitOutcome}> = []
  const wakeups = watchWakeups(kube, `${MANAGED_BY_LABEL}=${MANAGED_BY}`)
  try {
    await Promise.all(objs.map(async (o) => {
      const name = describeRef(o.object)
      const task = `${name} ${CHECKS[o.check].title}`
      onEvent({type: 'task', stage: stage.name, task, status: 'start'})
      const ref = {apiVersion: o.object.apiVersion, kind: o.object.kind, name: o.object.metadata.name, namespace: o.object.metadata.namespace}
      const r = await waitUntil(probeFor(kube, o.check, ref), {
        timeoutMs: Math.max(0, deadline - Date.now()),
        // a Service's endpoints change in its EndpointSlices, not in the Service: polled only
        wake: o.check === 'endpoints' ? undefined : wakeups.of(ref),
        failAfterMs: CHECKS[o.check].failAfterMs,
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
        throw await failure(kube, o, r, stage, opts)
      }
    }))
  } catch (e) {
    // The abort cuts the other objects' waits short, and one of them can reject before the failed
    // object's own error (which reads its events) is ready: report the object that failed, not
    // the abort (nor a bare error of a wait it cut short).
    const reason: unknown = abort.signal.reason
    const cutShort = abort.signal.aborted && (e === reason || (!isKpiError(e) && isKpiError(reason)))
    if (!cutShort) {
      // one wait's own error (the API refusing a read) ends the gate too: the other waits stop
      // with it, or they would poll on until the stage's deadline behind the operation (its
      // rollback), reporting on a stage that is over and keeping the process from exiting
      abort.abort(e)
      throw e
    }
    const first = outcomes.find((x) => x.r.outcome === 'failed')
    throw first ? await failure(kube, first.o, first.r, stage, opts) : reason
  } finally {
    wakeups.close()
    opts.signal?.removeEventListener('abort', onOuter)
  }
  const late = outcomes.filter((x) => x.r.outcome === 'timeout')
  if (late.length) throw await timeoutError(kube, late, stage, opts)
}

/** Recent events of the object, and for a Deployment those of its pods too (scheduling, image pulls). */
async function recentEvents(kube: Kube, live: LiveObject | undefined): Promise<KubeEvent[]> {
  if (!live) return []
  try {
    const events = await kube.events(live, 5)
    if (live.kind === 'Deployment') {
      const selector = podSelectorOf(live)
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

const retryHint = (opts: StageRunOptions) => opts.retry ?? 'kpi install again (it resumes)'

async function failure(kube: Kube, o: PlannedObject, r: WaitOutcome, stage: PlannedStage, opts: StageRunOptions): Promise<KpiError> {
  const name = describeRef(o.object)
  const events = await recentEvents(kube, r.live)
  const details: GateFailureDetails = {stage: stage.name, outcome: 'failed', problems: [{object: name, message: r.readiness.message, condition: r.readiness.condition, events}]}
  if (o.check === 'kpack-ready') {
    return new KpiError('failed', `stage ${stage.name}: ${name} is not ready: kpack says: ${r.readiness.message}`, {
      hint: `see kubectl get ${o.object.kind.toLowerCase()} ${o.object.metadata.name}${o.object.metadata.namespace ? ` -n ${o.object.metadata.namespace}` : ''} -o yaml; fix the cause, then run ${retryHint(opts)}`,
      details: {source: 'other', gate: details},
    })
  }
  return new KpiError('failed', `stage ${stage.name}: ${name} failed: ${r.readiness.message}${formatEvents(events)}`, {
    hint: `fix the cause, then run ${retryHint(opts)}`, details: {source: 'other', gate: details},
  })
}

async function timeoutError(kube: Kube, late: Array<{o: PlannedObject; r: WaitOutcome}>, stage: PlannedStage, opts: StageRunOptions): Promise<KpiError> {
  const parts: string[] = []
  const problems: GateProblem[] = []
  for (const {o, r} of late) {
    const events = await recentEvents(kube, r.live)
    const cond = r.readiness.condition ? `; last condition ${formatCondition(r.readiness.condition)}` : ''
    parts.push(`${describeRef(o.object)}: ${r.readiness.message}${cond}${formatEvents(events)}`)
    problems.push({object: describeRef(o.object), message: r.readiness.message, condition: r.readiness.condition, events})
  }
  const details: GateFailureDetails = {stage: stage.name, outcome: 'timeout', problems}
  return new KpiError('timeout', `stage ${stage.name} was not ready after ${formatDuration(opts.timeoutMs)}: ${parts.join(' | ')}`, {
    hint: `give more time with --timeout, or fix the cause and run ${retryHint(opts)}`, details: {source: 'other', gate: details},
  })
}
