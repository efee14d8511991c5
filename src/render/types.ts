/**
 * The render contract: what `renderPlatform` returns and the installer consumes. Ordering is data:
 * stages are applied in `STAGES` order, and objects within a stage in the order given.
 */

export const STAGES = [
  'namespaces',
  'crds',
  'rbac',
  'config',
  'kpack',
  'lifecycle',
  'stacks',
  'stores',
  'builders',
  'teams',
] as const

export type Stage = (typeof STAGES)[number]

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY = 'kpi'
export const STAGE_LABEL = 'kpi.dev/stage'

export interface ObjectMeta {
  name: string
  namespace?: string
  labels: Record<string, string>
  annotations?: Record<string, string>
}

/** A Kubernetes object as plain data; fields beyond metadata depend on the kind. */
export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: ObjectMeta
  [field: string]: unknown
}

export interface RenderedObject {
  stage: Stage
  object: KubeObject
}

export interface RenderResult {
  objects: RenderedObject[]
  /** things the user should know (e.g. build pods will not trust the CA); never fatal */
  warnings: string[]
}

export interface RenderOptions {
  /** skip the air-gap guard (tests of the guard itself render then walk) */
  skipAirGapGuard?: boolean
}
