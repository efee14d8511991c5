/**
 * The operation runner, shared by install, upgrade and rollback (as Helm's actions share its
 * storage driver): it holds the operation lease while the operation runs, writes the revision
 * record `pending-*` before the first object is touched, records each stage before it is applied
 * (with the end of the stage before it: one write per stage), and marks
 * the revision `deployed` (the one it replaced `superseded`, history trimmed to --history-max) or
 * `failed` with why.
 */
import {KpiError, isKpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import type {OnEvent} from '../progress/events.js'
import {acquireLease, DEFAULT_LEASE_SECONDS, type HeldLease} from '../revision/lease.js'
import type {OciClientOptions, RegistryClient} from '../oci/index.js'
import type {Bundle} from '../bundle/types.js'
import {renderPlatform} from '../render/render.js'
import type {RenderResult} from '../render/types.js'
import {inputsDigest, redactObjects, redactValues, type Operation, type RevisionRecord, type StageRecord, type WaitMode} from '../revision/record.js'
import type {Values} from '../values/types.js'
import {
  createRevision, DEFAULT_HISTORY_MAX, ensureRevisionNamespace, latestRevisionAfter, listRevisionHeads, pruneHistory, readRevision, saveRevision, type StoredRevision,
} from '../revision/store.js'
import type {StaleObject} from './changeset.js'
import {execute, type ExecuteOptions, type ExecuteResult} from './executor.js'
import {planStages, type PlannedStage} from './plan.js'

export interface OperationContext {
  kube: Kube
  onEvent: OnEvent
  kpiVersion: string
  now?: () => Date
  /** seconds a lease lasts without renewal (default 60) */
  leaseSeconds?: number
  /** revisions kept (default 10) */
  historyMax?: number
  signal?: AbortSignal
}

/** What every operation (install, upgrade, rollback) is given besides its own inputs. */
export interface OperationOptions {
  kube: Kube
  wait: WaitMode
  /** per stage */
  timeoutMs?: number
  kpiVersion: string
  /** registry settings for the preflight image check (CA, plain HTTP); credentials come from the values */
  registryOptions?: OciClientOptions
  registryClient?: RegistryClient
  onEvent: OnEvent
  signal?: AbortSignal
  now?: () => Date
  leaseSeconds?: number
  historyMax?: number
}

export const contextOf = (o: OperationOptions): OperationContext => ({
  kube: o.kube, onEvent: o.onEvent, kpiVersion: o.kpiVersion, now: o.now, leaseSeconds: o.leaseSeconds, historyMax: o.historyMax, signal: o.signal,
})

/**
 * What a lock and values make: the render (its warnings said), the stages, and what the revision
 * record keeps of them (values and objects without credentials, the digest of the inputs).
 */
export function desiredRevision(o: {lock: Bundle; values: Values; render?: RenderResult; onEvent: OnEvent}) {
  const render = o.render ?? renderPlatform(o.lock, o.values)
  for (const w of render.warnings) o.onEvent({type: 'warning', message: w})
  const redacted = redactValues(o.values)
  const objects = redactObjects(render.objects)
  return {render, warnings: [...render.warnings], stages: planStages(render.objects), redacted, objects, digest: inputsDigest(o.lock, redacted.values, objects)}
}

export const nowIso = (ctx: OperationContext): string => (ctx.now?.() ?? new Date()).toISOString()

/** Runs `body` holding the lease; the namespace of records and lease is made first. */
export async function withLease<T>(ctx: OperationContext, operation: Operation, body: (lease: HeldLease, signal: AbortSignal) => Promise<T>): Promise<T> {
  await ensureRevisionNamespace(ctx.kube)
  const lease = await acquireLease(ctx.kube, operation, ctx.leaseSeconds ?? DEFAULT_LEASE_SECONDS, {
    onWatch: (ms, s) => ctx.onEvent({type: 'info', message: `the operation lease of ${s.holder} looks expired (${s.why}): watching ${Math.round(ms / 1000)}s for a renewal before taking it over`}),
  })
  if (lease.tookOver) ctx.onEvent({type: 'warning', message: `took over the operation lease from ${lease.tookOver.holder} (${lease.tookOver.operation}, since ${lease.tookOver.since}): ${lease.tookOver.why}`})
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, lease.signal]) : lease.signal
  try {
    return await body(lease, signal)
  } finally {
    await lease.release()
  }
}

/**
 * Preflight reads the installation before the lease is taken (it only reads, and may take a
 * while): once the lease is held, the newest revision must still be the one preflight read. An
 * operation that held the lease meanwhile and has finished (its lease released, so this one got
 * it) would otherwise be followed by one planned against what it replaced.
 */
export function unchangedSincePreflight(seen: StoredRevision | undefined, now: StoredRevision | undefined): void {
  if (seen?.resourceVersion === now?.resourceVersion) return
  const r = now?.record
  throw new KpiError('conflict', `another kpi operation changed the installation while this one ran its preflight${r ? `: revision ${r.revision} (${r.description}) is now ${r.status}` : ''}`, {
    hint: 'run kpi status, then run this command again: it checks the installation as it is then',
  })
}

/**
 * What an upgrade or rollback starts from once it holds the lease: the newest revision, which must
 * be the one preflight `seen`; the number its own revision takes; and, when that newest one was
 * left pending (nobody holds the lease, this operation does: its operation died), that revision,
 * now recorded as failed and finished by this operation (`by`: `kpi upgrade`).
 */
export async function underLease(ctx: OperationContext, seen: StoredRevision | undefined, by: string): Promise<{now?: StoredRevision; next: number; interrupted?: number}> {
  const now = await latestRevisionAfter(ctx.kube, seen)
  unchangedSincePreflight(seen, now)
  const next = (now?.record.revision ?? 0) + 1
  if (!now?.record.status.startsWith('pending-')) return {now, next}
  await markInterrupted(ctx, now, `finished by revision ${next} (${by})`)
  ctx.onEvent({type: 'warning', message: `revision ${now.record.revision} (${now.record.operation}) was interrupted; recorded as failed`})
  return {now, next, interrupted: now.record.revision}
}

export interface RevisionRun {
  /** the record as it starts (status pending-*, stages pending) */
  record: RevisionRecord
  /** write over this stored record (resume) instead of creating one */
  over?: StoredRevision
  /** false: apply and gate but write no record (install's reconcile) */
  persist: boolean
  stages: PlannedStage[]
  stale: StaleObject[]
  exec: Omit<ExecuteOptions, 'kube' | 'onEvent' | 'onStage' | 'signal'>
  signal?: AbortSignal
}

export interface RevisionOutcome {
  record: RevisionRecord
  stored?: StoredRevision
  result: ExecuteResult
}

/** A revision that failed: the record as written, and the error of the stage that failed. */
export class RevisionFailed extends Error {
  constructor(readonly record: RevisionRecord, readonly error: KpiError, readonly stage?: string) {
    super(error.message)
  }
}

export const stageRecords = (stages: PlannedStage[]): StageRecord[] => stages.map((s) => ({name: s.name, status: 'pending', objects: s.objects.length, changed: 0}))

export async function runRevision(ctx: OperationContext, run: RevisionRun): Promise<RevisionOutcome> {
  const {kube} = ctx
  const record = run.record
  let stored: StoredRevision | undefined
  // the first stage is recorded as started by the record's first write: one write, not two
  let first = record.stages.find((s) => s.name === run.stages[0]?.name)
  if (first) Object.assign(first, {status: 'applying', startedAt: nowIso(ctx)})
  // a run that lost its lease writes no new record: the revision numbers belong to the holder now
  run.signal?.throwIfAborted()
  if (run.persist) stored = run.over ? await saveRevision(kube, run.over, record) : await createRevision(kube, record)
  const save = async () => {
    record.updatedAt = nowIso(ctx)
    if (stored) stored = await saveRevision(kube, stored, record)
  }
  let current: string | undefined
  let result: ExecuteResult
  try {
    result = await execute(run.stages, run.stale, {
      ...run.exec, kube, onEvent: ctx.onEvent, signal: run.signal,
      onStage: async (stage, status, r) => {
        const rec = record.stages.find((s) => s.name === stage.name)!
        current = stage.name
        if (status === 'applying') {
          if (rec === first) {
            first = undefined
            return
          }
          rec.startedAt = nowIso(ctx)
          rec.status = 'applying'
        } else {
          rec.status = 'ready'
          rec.finishedAt = nowIso(ctx)
          rec.changed = r!.changes.filter((c) => c.action !== 'unchanged').length
          if (r!.notChecked.length) rec.message = `kpack readiness not checked (--wait=applied): ${r!.notChecked.join(', ')}`
          current = undefined
          // written with the next stage's start or the revision's end, one write instead of two:
          // a kill in between finds this stage still applying, which is what it last recorded
          return
        }
        await save()
      },
    })
  } catch (e) {
    const err = isKpiError(e) ? e : new KpiError('failed', e instanceof Error ? e.message : String(e), {cause: e})
    const rec = current ? record.stages.find((s) => s.name === current) : undefined
    if (rec) Object.assign(rec, {status: 'failed', finishedAt: nowIso(ctx), message: err.message})
    if (current) ctx.onEvent({type: 'task', stage: current, task: run.stages.find((s) => s.name === current)!.title, status: 'failed', message: err.message})
    // if recording fails too (cluster gone), the original error is what matters
    if (run.persist) await finish(ctx, record, () => stored, (s) => (stored = s), {status: 'failed', message: err.message}).catch(() => {})
    throw new RevisionFailed(record, err, current)
  }
  if (run.persist) await finish(ctx, record, () => stored, (s) => (stored = s), {status: 'deployed', message: undefined})
  // the platform is deployed and recorded so: bookkeeping that fails now (the API server gone a
  // moment) is said, not made the operation's failure; the next operation's does it again
  if (run.persist) {
    await afterDeployed(ctx, record.revision).catch((e: unknown) => ctx.onEvent({
      type: 'warning',
      message: `revision ${record.revision} is deployed, but marking the revisions before it superseded and trimming the history failed: ${e instanceof Error ? e.message : String(e)}; the next kpi operation does both`,
    }))
  }
  return {record, stored, result}
}

async function finish(ctx: OperationContext, record: RevisionRecord, get: () => StoredRevision | undefined, set: (s: StoredRevision) => void, patch: Partial<RevisionRecord>): Promise<void> {
  Object.assign(record, patch, {updatedAt: nowIso(ctx), finishedAt: nowIso(ctx)})
  const s = get()
  if (s) set(await saveRevision(ctx.kube, s, record))
}

/** The revision just deployed replaces any other deployed one; history is trimmed. */
async function afterDeployed(ctx: OperationContext, revision: number): Promise<void> {
  for (const h of await listRevisionHeads(ctx.kube)) {
    if (h.revision === revision || h.status !== 'deployed') continue
    const s = await readRevision(ctx.kube, h.revision)
    if (s) await saveRevision(ctx.kube, s, {...s.record, status: 'superseded', updatedAt: nowIso(ctx)})
  }
  const dropped = await pruneHistory(ctx.kube, ctx.historyMax ?? DEFAULT_HISTORY_MAX)
  if (dropped.length) ctx.onEvent({type: 'info', message: `history: removed revision${dropped.length === 1 ? '' : 's'} ${dropped.join(', ')} (--history-max ${ctx.historyMax ?? DEFAULT_HISTORY_MAX})`})
}

/** Marks a revision whose operation died (its lease expired or its process is gone) as failed, saying so. */
export async function markInterrupted(ctx: OperationContext, s: StoredRevision, by: string): Promise<StoredRevision> {
  const r = s.record
  const stage = r.stages.find((x) => x.status === 'applying' || x.status === 'waiting')?.name
  const after = r.stages.filter((x) => x.status === 'ready').at(-1)?.name
  const message = `interrupted: the ${r.operation} stopped${stage ? ` during stage ${stage}` : after ? ` after stage ${after}` : ''} (its kpi process died); ${by}`
  const stages = r.stages.map((x) => (x.status === 'applying' || x.status === 'waiting' ? {...x, status: 'failed' as const, message: 'interrupted'} : x))
  return saveRevision(ctx.kube, s, {...r, status: 'failed', message, stages, updatedAt: nowIso(ctx), finishedAt: nowIso(ctx)})
}
