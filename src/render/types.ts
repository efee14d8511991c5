/**
 * The render contract: what `renderPlatform` returns and the installer consumes. Ordering is data:
 * stages are applied in `STAGES` order, and objects within a stage in the order given.
 */
import type {LiveObject, ObjectMetaLike} from '../kube/types.js'

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

/** Rendered metadata always carries labels (kpi's own); otherwise the same as what the API serves. */
export interface ObjectMeta extends ObjectMetaLike {
  labels: Record<string, string>
}

/**
 * A Kubernetes object as plain data; fields beyond metadata depend on the kind. The one object
 * type: a rendered object is a LiveObject whose labels are set, so either passes where a
 * LiveObject is wanted without a cast.
 */
export interface KubeObject extends LiveObject {
  metadata: ObjectMeta
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
