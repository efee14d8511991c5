/**
 * Is this live object ready? Pure functions over what the API serves, one per kind of check, each
 * with the rule the owning controller documents:
 * - CRD: Established=True (NamesAccepted=False is a failure: the names clash with another CRD).
 * - Deployment: as `kubectl rollout status`: the controller observed the current generation, every
 *   replica is updated and available, no old replicas remain, Available=True;
 *   Progressing=False/ProgressDeadlineExceeded is a failure.
 * - kpack resources: kpack's Ready condition for the generation it observed (status.observedGeneration);
 *   False is a failure carrying kpack's message.
 * - Service: every endpoint in its EndpointSlices ready, none of a pod going away, at least one.
 */
import {conditionOf, formatCondition, type Condition, type LiveObject} from './types.js'

export type ReadyState = 'ready' | 'progressing' | 'failed'

export interface Readiness {
  state: ReadyState
  /** why, in a few words: `1 of 2 replicas available`, kpack's message... */
  message: string
  /** the condition that decided, when one did */
  condition?: Condition
}

const ready = (message: string, condition?: Condition): Readiness => ({state: 'ready', message, condition})
const progressing = (message: string, condition?: Condition): Readiness => ({state: 'progressing', message, condition})
const failed = (message: string, condition?: Condition): Readiness => ({state: 'failed', message, condition})

export function crdReadiness(crd: LiveObject | undefined): Readiness {
  if (!crd) return progressing('not found')
  const names = conditionOf(crd, 'NamesAccepted')
  if (names?.status === 'False') return failed(`names not accepted: ${names.message ?? names.reason ?? ''}`.trim(), names)
  const est = conditionOf(crd, 'Established')
  if (est?.status === 'True') return ready('established', est)
  return progressing(`not established yet: ${formatCondition(est)}`, est)
}

interface DeploymentLike extends LiveObject {
  spec?: {replicas?: number}
  status?: {observedGeneration?: number; replicas?: number; updatedReplicas?: number; availableReplicas?: number; readyReplicas?: number}
}

export function deploymentReadiness(live: LiveObject | undefined): Readiness {
  if (!live) return progressing('not found')
  const d = live as DeploymentLike
  const want = d.spec?.replicas ?? 1
  const s = d.status ?? {}
  const gen = d.metadata.generation ?? 0
  const progress = conditionOf(d, 'Progressing')
  // the condition a timeout reports: Available says why pods are missing, else Progressing
  const avail = conditionOf(d, 'Available')
  const last = avail ?? progress
  // conditions are of the generation observed: a stuck rollout of the spec just replaced (the one
  // a rollback undoes) says nothing of the new one (kubectl rollout status checks this first too)
  if ((s.observedGeneration ?? 0) < gen) return progressing(`the deployment controller has not observed generation ${gen} yet`, last)
  if (progress?.status === 'False' && progress.reason === 'ProgressDeadlineExceeded') {
    return failed(`rollout stuck: ${progress.message ?? 'progress deadline exceeded'}`, progress)
  }
  const updated = s.updatedReplicas ?? 0
  const available = s.availableReplicas ?? 0
  const total = s.replicas ?? 0
  if (updated < want) return progressing(`${updated} of ${want} replicas updated`, last)
  if (total > updated) return progressing(`${total - updated} old replicas pending termination`, last)
  if (available < updated) return progressing(`${available} of ${updated} updated replicas available`, last)
  if (avail?.status !== 'True') return progressing(formatCondition(avail), avail)
  return ready(`${available}/${want} replicas available`, avail)
}

export function kpackReadiness(live: LiveObject | undefined): Readiness {
  if (!live) return progressing('not found')
  const gen = live.metadata.generation ?? 0
  const observed = (live.status as {observedGeneration?: number} | undefined)?.observedGeneration
  const c = conditionOf(live, 'Ready')
  if (observed === undefined && !c) return progressing('kpack has not reconciled it yet (no status)')
  if ((observed ?? 0) < gen) return progressing(`kpack has not reconciled generation ${gen} yet`, c)
  if (c?.status === 'True') return ready('Ready', c)
  if (c?.status === 'False') return failed(c.message || c.reason || 'Ready=False', c)
  return progressing(formatCondition(c), c)
}

interface SliceLike {
  endpoints?: Array<{addresses?: string[]; conditions?: {ready?: boolean; terminating?: boolean}; targetRef?: {kind?: string; name?: string}}>
}

/** The pods behind a Service's EndpointSlices (their targetRefs), by name. */
export const endpointPods = (slices: LiveObject[]): string[] =>
  (slices as unknown as SliceLike[]).flatMap((s) => (s.endpoints ?? []).flatMap((e) => (e.targetRef?.kind === 'Pod' && e.targetRef.name ? [e.targetRef.name] : [])))

/**
 * Every endpoint ready (an unset `ready` counts as ready, as the EndpointSlice API says consumers
 * should), none terminating, none a pod that is gone or being deleted (`goingAway`), and at least
 * one: a webhook Service whose old pod still answers would let that pod judge the next stage's
 * objects (kpack 0.16's webhook refusing a ClusterLifecycle it does not know).
 */
export function endpointsReadiness(slices: LiveObject[], goingAway: ReadonlySet<string> = new Set()): Readiness {
  let total = 0
  let readyCount = 0
  let leaving = 0
  for (const s of slices as unknown as SliceLike[]) {
    for (const e of s.endpoints ?? []) {
      total++
      if (e.conditions?.terminating === true || (e.targetRef?.kind === 'Pod' && goingAway.has(e.targetRef.name ?? ''))) leaving++
      else if (e.conditions?.ready !== false && (e.addresses?.length ?? 0) > 0) readyCount++
    }
  }
  if (leaving > 0) return progressing(`${leaving} endpoint${leaving === 1 ? '' : 's'} of pods going away`)
  if (readyCount > 0 && readyCount === total) return ready(`${readyCount} ready endpoint${readyCount === 1 ? '' : 's'}`)
  return progressing(total ? `${readyCount} of ${total} endpoints ready` : 'no endpoints yet')
}
