/**
 * kpi rollback [REVISION], and the automatic rollback of a failed upgrade: the objects of an
 * earlier revision applied again stage by stage with the same gates, then what that revision did
 * not have deleted, recorded as a new revision (`rollback to N`), as Helm does.
 *
 * Secrets: records hold no credentials (record.ts), so a rollback never rolls Secret data back.
 * Each Secret of the target revision is applied with the data it has in the cluster now: the live
 * credentials stay. A Secret the target needs and the cluster no longer has cannot be made without
 * its data; the rollback refuses before touching anything, naming it.
 */
import {KpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import {isKpackResource} from '../kube/checks.js'
import {describeRef, refOf} from '../kube/types.js'
import type {RenderedObject} from '../render/types.js'
import {REDACTED, type RevisionRecord, type WaitMode} from '../revision/record.js'
import {listRevisionHeads, readRevision, type StoredRevision} from '../revision/store.js'
import {staleObjects} from './changeset.js'
import {nowIso, runRevision, stageRecords, type OperationContext, type RevisionOutcome} from './operation.js'
import {planStages} from './plan.js'
import type {Applied} from './untouched.js'

/** The target's objects, each Secret carrying the data it has in the cluster now. */
export async function withLiveSecrets(kube: Kube, objects: RenderedObject[]): Promise<RenderedObject[]> {
  const missing: string[] = []
  const out: RenderedObject[] = []
  for (const r of objects) {
    const o = r.object
    const data = o.data as Record<string, string> | undefined
    const redacted = o.kind === 'Secret' && o.apiVersion === 'v1' && (Object.values(data ?? {}).includes(REDACTED) || o.stringData !== undefined)
    if (!redacted) {
      out.push(r)
      continue
    }
    const live = await kube.get(refOf(o))
    if (!live) {
      missing.push(describeRef(o))
      continue
    }
    const {stringData: _s, ...rest} = o
    out.push({stage: r.stage, object: {...rest, metadata: o.metadata, data: live.data ?? {}}})
  }
  if (missing.length) {
    throw new KpiError('conflict', `cannot roll back: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} no longer in the cluster, and revision records hold no credentials`, {
      hint: 'run kpi upgrade with the lock of that revision and a values file holding the credentials instead',
    })
  }
  return out
}

export interface RollbackRun {
  target: StoredRevision
  /** the new revision's number */
  revision: number
  /** the revision deployed now, which the rollback replaces */
  previousRevision?: number
  /** objects that may be in the cluster now (the failed and the deployed revision's): what the target lacks is deleted */
  current: RenderedObject[]
  description: string
  wait: WaitMode
  timeoutMs: number
  signal?: AbortSignal
  /** what the deployed revision applied, when it is the latest (untouched.ts) */
  applied?: Applied
}

export async function runRollback(ctx: OperationContext, run: RollbackRun): Promise<RevisionOutcome> {
  const t = run.target.record
  const objects = await withLiveSecrets(ctx.kube, t.objects)
  const stages = planStages(objects)
  const record: RevisionRecord = {
    ...t,
    revision: run.revision,
    previousRevision: run.previousRevision,
    operation: 'rollback',
    status: 'pending-rollback',
    description: run.description,
    rollbackTo: t.revision,
    message: undefined,
    kpiVersion: ctx.kpiVersion,
    startedAt: nowIso(ctx),
    updatedAt: nowIso(ctx),
    finishedAt: undefined,
    wait: run.wait,
    stages: stageRecords(stages),
  }
  return runRevision(ctx, {
    record, persist: true, stages, stale: staleObjects(run.current, t.objects), signal: run.signal,
    // the target's kpack may be older than the one that defaulted the live specs: write them whole
    exec: {wait: run.wait, timeoutMs: run.timeoutMs, retry: `kpi rollback ${t.revision}`, replaceSpec: isKpackResource, applied: run.applied},
  })
}

/**
 * The revision `kpi rollback` goes to: the one named, or else the newest revision before the
 * deployed one that was itself deployed once (superseded).
 */
export async function rollbackTarget(kube: Kube, wanted: number | undefined): Promise<StoredRevision> {
  const heads = await listRevisionHeads(kube)
  if (!heads.length) throw new KpiError('not-found', `no kpi installation in the cluster at ${kube.server} (no revision record in namespace kpi-system)`, {hint: 'install with kpi install -b LOCK -f VALUES'})
  const deployed = heads.filter((h) => h.status === 'deployed').at(-1)
  // after a failed or interrupted operation (an upgrade with --no-rollback), going back means to
  // the deployed revision, whose state it left half changed; otherwise to the one before it
  const afterDeployed = deployed && heads.at(-1)!.revision > deployed.revision
  // (one still labelled deployed below the newest deployed: its superseding failed, a warning said so)
  const before = heads.filter((h) => (h.status === 'superseded' || h.status === 'deployed') && (!deployed || h.revision < deployed.revision))
  const revision = wanted ?? (afterDeployed ? deployed.revision : before.at(-1)?.revision)
  if (revision === undefined) throw new KpiError('not-found', 'there is no earlier revision to roll back to', {hint: 'kpi history lists the revisions'})
  const head = heads.find((h) => h.revision === revision)
  if (!head) {
    throw new KpiError('not-found', `revision ${revision} is not in the history (${heads.map((h) => h.revision).join(', ')})`, {hint: 'kpi history lists the revisions; the oldest are removed past --history-max'})
  }
  if (head.status.startsWith('pending-')) throw new KpiError('usage', `revision ${revision} never finished (${head.status}): it is not a state to go back to`, {hint: 'kpi history lists the revisions'})
  return (await readRevision(kube, revision))!
}
