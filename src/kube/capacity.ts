/**
 * Can a pod the scheduler left pending ever run? Pure functions over what the API serves: the
 * pod's effective requests (as the scheduler sums them) against each node's allocatable. A pod
 * that asks more of some resource than every node allocates waits forever on a cluster that
 * does not grow, and a gate that waits its whole timeout for it (five minutes by default) only
 * delays the rollback. Whether the cluster grows is read from the pod's events: an autoscaler that
 * takes the pod on says so (cluster-autoscaler: TriggeredScaleUp; Karpenter: Nominated).
 */
import type {LiveObject} from './types.js'
import {conditionOf} from './types.js'

const SUFFIX: Record<string, number> = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
}

/** A Kubernetes quantity (`500m`, `2`, `1Gi`, `129e6`) as a number; undefined if it is not one. */
export function parseQuantity(q: unknown): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) ? q : undefined
  if (typeof q !== 'string') return undefined
  // "1E" is exa, "1E3" an exponent: the exponent needs its digits
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/.exec(q.trim())
  if (!m) return undefined
  const n = Number(m[1])
  return m[2] !== undefined ? n * 10 ** Number(m[2]) : n * SUFFIX[m[3] ?? '']!
}

interface ContainerLike {
  resources?: {requests?: Record<string, unknown>}
  restartPolicy?: string
}

interface PodSpecLike {
  containers?: ContainerLike[]
  initContainers?: ContainerLike[]
  overhead?: Record<string, unknown>
}

type Amounts = Map<string, number>

function add(into: Amounts, from: Record<string, unknown> | undefined): Amounts {
  for (const [k, v] of Object.entries(from ?? {})) into.set(k, (into.get(k) ?? 0) + (parseQuantity(v) ?? 0))
  return into
}

/**
 * What the scheduler reserves for the pod: the containers and sidecars (init containers that keep
 * running) together, or an init container with the sidecars started before it, whichever is more
 * of each resource; plus the runtime class's overhead.
 */
export function podRequests(pod: LiveObject): Amounts {
  const spec = (pod.spec ?? {}) as PodSpecLike
  const sidecars: Amounts = new Map()
  const peak: Amounts = new Map()
  for (const c of spec.initContainers ?? []) {
    if (c.restartPolicy === 'Always') {
      add(sidecars, c.resources?.requests)
      continue
    }
    const during = add(new Map(sidecars), c.resources?.requests)
    for (const [k, v] of during) peak.set(k, Math.max(peak.get(k) ?? 0, v))
  }
  const total: Amounts = new Map(sidecars)
  for (const c of spec.containers ?? []) add(total, c.resources?.requests)
  for (const [k, v] of peak) total.set(k, Math.max(total.get(k) ?? 0, v))
  add(total, spec.overhead)
  for (const [k, v] of total) if (!(v > 0)) total.delete(k)
  return total
}

function formatAmount(resource: string, v: number): string {
  if (resource === 'cpu') return Number.isInteger(v) ? String(v) : `${Math.round(v * 1000)}m`
  for (const [unit, size] of [['Gi', 2 ** 30], ['Mi', 2 ** 20], ['Ki', 2 ** 10]] as const) {
    if (v >= size && Number.isInteger(v / size)) return `${v / size}${unit}`
  }
  return String(v)
}

/**
 * Why no node can ever run the pod, or undefined when one could (once others make room).
 * Taints, selectors and affinity are left out on purpose: they decide where a pod may go, and a
 * node that matches may yet come; capacity the pod asks beyond the largest node never does.
 */
export function neverFits(pod: LiveObject, nodes: LiveObject[]): string | undefined {
  if (!nodes.length) return undefined
  const wants = podRequests(pod)
  const allocatable = (n: LiveObject, r: string) => parseQuantity(((n.status ?? {}) as {allocatable?: Record<string, unknown>}).allocatable?.[r]) ?? 0
  const fits = (n: LiveObject) => [...wants].every(([r, v]) => v <= allocatable(n, r))
  if (nodes.some(fits)) return undefined
  // name the resource no node has enough of, else every resource, since each node lacks another
  const short = [...wants].find(([r, v]) => nodes.every((n) => v > allocatable(n, r)))
  if (!short) return `it requests ${[...wants].map(([r, v]) => `${r} ${formatAmount(r, v)}`).join(', ')}, and no node has all of it`
  const [r, v] = short
  const largest = nodes.reduce((a, b) => (allocatable(b, r) > allocatable(a, r) ? b : a))
  const most = allocatable(largest, r)
  if (!(most > 0)) return `it requests ${r} ${formatAmount(r, v)}, and no node has any`
  return `it requests ${r} ${formatAmount(r, v)}, more than any of the ${nodes.length} node${nodes.length === 1 ? '' : 's'} allocates (at most ${formatAmount(r, most)}, on ${largest.metadata.name})`
}

/** The scheduler has tried the pod and found no node for it. */
export const unschedulable = (pod: LiveObject): boolean => {
  const c = conditionOf(pod, 'PodScheduled')
  return c?.status === 'False' && c.reason === 'Unschedulable'
}

/** Event reasons of an autoscaler that will add a node for the pod. */
const SCALING = new Set(['TriggeredScaleUp', 'Nominated'])

export const autoscalerTookIt = (events: Array<{reason: string}>): boolean => events.some((e) => SCALING.has(e.reason))
