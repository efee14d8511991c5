/** Kubernetes objects as plain JSON, and how kpi names them in messages. */

export interface ObjectMetaLike {
  name: string
  namespace?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  deletionTimestamp?: string
  [field: string]: unknown
}

/** Any object as the API serves it. */
export interface LiveObject {
  apiVersion: string
  kind: string
  metadata: ObjectMetaLike
  [field: string]: unknown
}

export interface ObjectRef {
  apiVersion: string
  kind: string
  name: string
  namespace?: string
}

export interface Condition {
  type: string
  status: 'True' | 'False' | 'Unknown' | string
  reason?: string
  message?: string
  lastTransitionTime?: string
  observedGeneration?: number
}

export interface KubeEvent {
  type: string
  reason: string
  message: string
  count: number
  /** RFC 3339 */
  time: string
  /** what the event is about, e.g. `Pod kpack/kpack-controller-5d9f-abcde` */
  object: string
}

export const refOf = (o: {apiVersion: string; kind: string; metadata: {name: string; namespace?: string}}): ObjectRef => ({
  apiVersion: o.apiVersion,
  kind: o.kind,
  name: o.metadata.name,
  ...(o.metadata.namespace ? {namespace: o.metadata.namespace} : {}),
})

/** `ClusterBuilder base`, `Deployment kpack/kpack-controller`: how every message names an object. */
export function describeRef(r: ObjectRef | LiveObject | {kind: string; metadata: {name: string; namespace?: string}}): string {
  const name = 'metadata' in r ? r.metadata.name : r.name
  const ns = 'metadata' in r ? r.metadata.namespace : r.namespace
  return `${r.kind} ${ns ? `${ns}/` : ''}${name}`
}

export const groupOf = (apiVersion: string): string => (apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '')

/** A Deployment's pod selector as a label selector string; undefined when it has none or uses expressions. */
export function podSelectorOf(o: LiveObject): string | undefined {
  const sel = (o.spec as {selector?: {matchLabels?: Record<string, string>; matchExpressions?: unknown[]}} | undefined)?.selector
  if (!sel?.matchLabels || sel.matchExpressions?.length) return undefined
  return Object.entries(sel.matchLabels).map(([k, v]) => `${k}=${v}`).join(',') || undefined
}

export function conditionsOf(o: LiveObject | undefined): Condition[] {
  const c = (o?.status as {conditions?: unknown} | undefined)?.conditions
  return Array.isArray(c) ? (c as Condition[]) : []
}

export const conditionOf = (o: LiveObject | undefined, type: string): Condition | undefined => conditionsOf(o).find((c) => c.type === type)

/** `Ready=False (BuilderNotReady: stack base is not ready)` */
export function formatCondition(c: Condition | undefined): string {
  if (!c) return 'no condition yet'
  const why = [c.reason, c.message].filter(Boolean).join(': ')
  return `${c.type}=${c.status}${why ? ` (${why})` : ''}`
}

/** Same object across versions: group, kind, namespace, name (a CRD version change keeps the object). */
export const identity = (o: {apiVersion: string; kind: string; metadata: {name: string; namespace?: string}}): string =>
  `${groupOf(o.apiVersion)}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`
