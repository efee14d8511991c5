/**
 * The one table of readiness checks: for each kind of check, how an object is judged from the
 * live state (the pure rules are in kube/readiness.ts), how progress names it and how `kpi status`
 * counts it. The executor's gates and `kpi status` both read this table, so a rule changes in
 * one place.
 */
import {isKpiError} from '../errors.js'
import type {Kube} from './client.js'
import {autoscalerTookIt, neverFits, unschedulable} from './capacity.js'
import {crdReadiness, deploymentReadiness, endpointPods, endpointsReadiness, kpackReadiness, type Readiness} from './readiness.js'
import type {Probe} from './wait.js'
import {podSelectorOf, type LiveObject, type ObjectRef} from './types.js'

/**
 * - `established`: CRD Established
 * - `rollout`: Deployment rolled out and available
 * - `endpoints`: every endpoint of the Service ready and none of a pod going away (the webhook
 *   that answers is the current one); judged once the stage's Deployments rolled out
 * - `kpack-ready`: kpack's Ready condition (skipped with --wait=applied)
 * - `applied`: accepted by the API server is all there is to it
 */
export type CheckKind = 'established' | 'rollout' | 'endpoints' | 'kpack-ready' | 'applied'

export interface Check {
  /** progress: `Deployment kpack/kpack-controller rolled out` */
  title: string
  /** kpi status: `2/2 Deployments available` */
  counted?: string
  /** judge the live object (present); may read more (EndpointSlices) */
  judge(kube: Kube, live: LiveObject, ref: ObjectRef): Promise<Readiness>
  /** how long a failed judgement must hold before a gate believes it (waitUntil's failAfterMs) */
  failAfterMs?: number
}

export const CHECKS: Record<CheckKind, Check> = {
  established: {title: 'established', counted: 'CRDs established', judge: async (_k, live) => crdReadiness(live)},
  // A pod no node is large enough for fails the rollout, once that has held long enough for an
  // autoscaler to take the pod on (cluster-autoscaler scans every 10 s, Karpenter batches for
  // up to 10 s); otherwise the gate would wait out its whole timeout before rolling back. The
  // hold applies to a ProgressDeadlineExceeded rollout too: 15 s on a deadline of minutes.
  rollout: {
    title: 'rolled out',
    counted: 'Deployments available',
    judge: async (kube, live) => {
      const r = deploymentReadiness(live)
      if (r.state !== 'progressing' || r.message.startsWith('the deployment controller')) return r
      const stuck = await podNoNodeFits(kube, live)
      return stuck ? {state: 'failed', message: stuck, condition: r.condition} : r
    },
    failAfterMs: 15_000,
  },
  endpoints: {
    title: 'has ready endpoints',
    counted: 'Services with ready endpoints',
    judge: async (kube, _live, ref) => {
      const slices = await kube.list('discovery.k8s.io/v1', 'EndpointSlice', {namespace: ref.namespace, labelSelector: `kubernetes.io/service-name=${ref.name}`})
      // a slice lags its pods: one deleted a moment ago can still be listed as ready
      const goingAway = new Set<string>()
      await Promise.all(endpointPods(slices).map(async (name) => {
        const pod = await kube.get({apiVersion: 'v1', kind: 'Pod', name, namespace: ref.namespace})
        if (!pod || pod.metadata.deletionTimestamp) goingAway.add(name)
      }))
      return endpointsReadiness(slices, goingAway)
    },
  },
  // kpack writes Ready=False for an error it retries: a ClusterBuilder reconciled a moment after its
  // stack turned Ready, from kpack's stale cache, says "Builder has no latestImage" until the retry
  // (seen with 50 ms polls in a CI run). Only a False that holds is kpack's verdict.
  'kpack-ready': {title: 'Ready', counted: 'kpack resources Ready', judge: async (_k, live) => kpackReadiness(live), failAfterMs: 5000},
  applied: {title: 'applied', judge: async () => ({state: 'ready', message: 'present'})},
}

/** The first pending pod of the Deployment that no node can ever run, and why; reads nodes and events only for one the scheduler gave up on. */
async function podNoNodeFits(kube: Kube, deployment: LiveObject): Promise<string | undefined> {
  const labelSelector = podSelectorOf(deployment)
  if (!labelSelector) return undefined
  // cached: a pod the scheduler gave up on stays so for the 15 s the judgement must hold (failAfterMs)
  const pending = (await kube.list('v1', 'Pod', {namespace: deployment.metadata.namespace, labelSelector, fieldSelector: 'status.phase=Pending', cached: true})).filter(unschedulable)
  if (!pending.length) return undefined
  // a user who may not list nodes (a namespace admin: preflight's node-capacity.ts skips its check
  // for one) gets no capacity judgement, the rollout is waited for as any other; not a forbidden error
  const all = await kube.list('v1', 'Node').catch((e: unknown) => {
    if (isKpiError(e) && e.kind === 'auth') return undefined
    throw e
  })
  if (!all) return undefined
  const nodes = all.filter((n) => !n.metadata.deletionTimestamp)
  for (const pod of pending) {
    const why = neverFits(pod, nodes)
    if (why && !autoscalerTookIt(await kube.events(pod, 20))) return `pod ${pod.metadata.name} can never be scheduled: ${why}`
  }
  return undefined
}

/** kpack kinds whose Ready condition says kpack accepted them. */
export const KPACK_READY_KINDS = new Set(['ClusterLifecycle', 'ClusterStack', 'ClusterStore', 'ClusterBuilder', 'Builder', 'ClusterBuildpack', 'Buildpack'])

export const isKpackResource = (o: {apiVersion: string; kind: string}): boolean => o.apiVersion.startsWith('kpack.io/') && KPACK_READY_KINDS.has(o.kind)

export function checkFor(o: LiveObject): CheckKind {
  if (o.kind === 'CustomResourceDefinition') return 'established'
  if (o.kind === 'Deployment' && o.apiVersion === 'apps/v1') return 'rollout'
  if (o.kind === 'Service' && o.apiVersion === 'v1' && (o.spec as {selector?: unknown} | undefined)?.selector) return 'endpoints'
  if (isKpackResource(o)) return 'kpack-ready'
  return 'applied'
}

/** A probe for waitUntil: read the object, judge it by its check; missing is progressing. */
export const probeFor = (kube: Kube, check: CheckKind, ref: ObjectRef): Probe => async () => {
  const live = await kube.get(ref)
  if (!live) return {readiness: {state: 'progressing', message: 'not found'}}
  return {readiness: await CHECKS[check].judge(kube, live, ref), live}
}
