/**
 * kpi status: where the installed platform stands, from the latest revision record and the live
 * objects it lists. Each install stage is judged by its objects' checks (plan.ts): present,
 * CRDs established, Deployments available, webhook Services with ready endpoints, kpack resources
 * Ready. A kpack resource with no Ready condition at all is `unknown` (no kpack controller has
 * looked at it: on a cluster where kpack cannot run, or just after install), which is reported
 * but is not unhealthy; Ready=False is.
 */
import {KpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import {CHECKS} from '../kube/checks.js'
import {describeRef, refOf} from '../kube/types.js'
import type {RevisionRecord} from '../revision/record.js'
import {readLease, type LeaseState} from '../revision/lease.js'
import {latestRevision} from '../revision/store.js'
import {planStages, type PlannedObject} from './plan.js'
import {mapLimit} from '../pool.js'

export type ObjectState = 'ready' | 'progressing' | 'failed' | 'missing' | 'unknown'
export type Health = 'healthy' | 'unhealthy' | 'unknown'

export interface ObjectHealth {
  object: string
  check: PlannedObject['check']
  state: ObjectState
  message: string
}

export interface StageHealth {
  name: string
  title: string
  health: Health
  objects: number
  present: number
  /** one line: `21/21 present, 2/2 Deployments available` */
  summary: string
  /** objects that are not ready (missing, progressing, failed, unknown) */
  problems: ObjectHealth[]
}

export interface PlatformStatus {
  name: string
  version: string
  kpackVersion: string
  revision: number
  status: RevisionRecord['status']
  operation: RevisionRecord['operation']
  message?: string
  updatedAt: string
  kpiVersion: string
  wait: RevisionRecord['wait']
  healthy: boolean
  /**
   * The last word of `kpi status`: `healthy`, `NOT healthy`, or `healthy (kpack readiness unknown
   * for N resources)`: healthy is not claimed bare while no kpack controller has judged the builders.
   */
  verdict: string
  stages: StageHealth[]
  kpack: {ready: number; notReady: number; unknown: number}
  /** an operation running now, or one that died before it finished */
  operationState?: OperationState
}

export interface OperationState {
  state: 'running' | 'interrupted'
  /** one line: who runs it since when, or what was interrupted where */
  message: string
  /** the command that finishes an interrupted operation */
  finishWith?: string
}

/** Whether the latest revision is being written now, or was left pending by an operation that died. */
export function operationState(r: RevisionRecord, lease: LeaseState | undefined): OperationState | undefined {
  if (lease && !lease.dead) return {state: 'running', message: `${lease.operation || 'an operation'} in progress: ${lease.holder} since ${lease.since}`}
  if (!r.status.startsWith('pending-')) return undefined
  const stage = r.stages.find((s) => s.status === 'applying' || s.status === 'waiting')?.name
  const after = r.stages.filter((s) => s.status === 'ready').at(-1)?.name
  const why = lease?.why ? ` (${lease.why})` : ''
  const finishWith = r.operation === 'install' ? 'kpi install -b LOCK -f VALUES (it resumes)'
    : r.operation === 'upgrade' ? `kpi upgrade -b LOCK -f VALUES (the same lock finishes it), or kpi rollback${r.previousRevision ? ` ${r.previousRevision}` : ''}`
      : `kpi rollback ${r.rollbackTo ?? ''}`.trim()
  return {
    state: 'interrupted',
    message: `interrupted: ${r.description ?? `${r.operation} of revision ${r.revision}`} (revision ${r.revision}) stopped${stage ? ` during stage ${stage}` : after ? ` after stage ${after}` : ''}: its kpi process died${why}`,
    finishWith,
  }
}

async function judge(kube: Kube, o: PlannedObject): Promise<ObjectHealth> {
  const ref = refOf(o.object)
  const name = describeRef(ref)
  const live = await kube.get(ref)
  if (!live) return {object: name, check: o.check, state: 'missing', message: 'not found in the cluster'}
  const r = await CHECKS[o.check].judge(kube, live, ref)
  const noStatus = !live.status || Object.keys(live.status as object).length === 0
  if (o.check === 'kpack-ready' && r.state === 'progressing' && noStatus) return {object: name, check: o.check, state: 'unknown', message: 'no Ready condition: no kpack controller has reconciled it'}
  return {object: name, check: o.check, state: r.state, message: r.message}
}

export function verdict(healthy: boolean, unknownKpack: number): string {
  if (!healthy) return 'NOT healthy'
  if (!unknownKpack) return 'healthy'
  return `healthy (kpack readiness unknown for ${unknownKpack} resource${unknownKpack === 1 ? '' : 's'})`
}

export async function platformStatus(kube: Kube): Promise<PlatformStatus> {
  const latest = await latestRevision(kube)
  if (!latest) {
    throw new KpiError('not-found', `no kpi installation in the cluster at ${kube.server} (no revision record in namespace kpi-system)`, {
      hint: 'install with kpi install -b LOCK -f VALUES',
    })
  }
  const r = latest.record
  const opState = operationState(r, await readLease(kube))
  const stages = planStages(r.objects)
  const kpack = {ready: 0, notReady: 0, unknown: 0}
  const out: StageHealth[] = []
  for (const s of stages) {
    const judged = await mapLimit(s.objects, 8, (o) => judge(kube, o))
    const present = judged.filter((j) => j.state !== 'missing').length
    const bad = judged.filter((j) => j.state === 'missing' || j.state === 'failed' || j.state === 'progressing')
    const unknown = judged.filter((j) => j.state === 'unknown')
    for (const j of judged.filter((x) => x.check === 'kpack-ready')) {
      if (j.state === 'ready') kpack.ready++
      else if (j.state === 'unknown') kpack.unknown++
      else kpack.notReady++
    }
    const parts = [`${present}/${judged.length} present`]
    const count = (check: PlannedObject['check'], label: string) => {
      const of = judged.filter((j) => j.check === check)
      if (of.length) parts.push(`${of.filter((j) => j.state === 'ready').length}/${of.length} ${label}`)
    }
    for (const [check, c] of Object.entries(CHECKS)) if (c.counted) count(check as PlannedObject['check'], c.counted)
    if (unknown.length) parts.push(`${unknown.length} kpack readiness unknown`)
    out.push({
      name: s.name,
      title: s.title,
      health: bad.length ? 'unhealthy' : unknown.length ? 'unknown' : 'healthy',
      objects: judged.length,
      present,
      summary: parts.join(', '),
      problems: [...bad, ...unknown],
    })
  }
  const finished = r.status === 'deployed'
  const healthy = finished && out.every((s) => s.health !== 'unhealthy')
  return {
    name: r.name,
    version: r.version,
    kpackVersion: r.kpackVersion,
    revision: r.revision,
    status: r.status,
    operation: r.operation,
    message: r.message,
    updatedAt: r.updatedAt,
    kpiVersion: r.kpiVersion,
    wait: r.wait,
    healthy,
    verdict: verdict(healthy, kpack.unknown),
    stages: out,
    kpack,
    ...(opState ? {operationState: opState} : {}),
  }
}
