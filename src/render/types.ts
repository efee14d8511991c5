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

// ---- values (see docs/values.md; the JSON schema is in values-schema.ts) ----

export type FailurePolicy = 'Fail' | 'Ignore'

export interface Toleration {
  key?: string
  operator?: 'Exists' | 'Equal'
  value?: string
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute'
  tolerationSeconds?: number
}

export interface ResourceRequirements {
  requests?: Record<string, string | number>
  limits?: Record<string, string | number>
}

export interface WorkloadValues {
  replicas: number
  resources?: ResourceRequirements
  nodeSelector?: Record<string, string>
  tolerations?: Toleration[]
}

export interface WebhookValues extends WorkloadValues {
  failurePolicy: FailurePolicy
}

export interface RegistryValues {
  /** host[:port] of the registry the lock points at */
  server: string
  /** repository prefix under the server, e.g. `platform/kpack` */
  repository: string
  username?: string
  /** resolved from `password` or `passwordFile` */
  password?: string
  /** resolved from `dockerConfigJson` or `dockerConfigJsonFile`: the whole docker config JSON text */
  dockerConfigJson?: string
}

export interface ProxyValues {
  httpProxy?: string
  httpsProxy?: string
  /** user entries, in the order given; render appends the cluster-internal ones */
  noProxy: string[]
}

export interface ClusterValues {
  /** the cluster DNS domain (default cluster.local) */
  domain: string
  serviceCIDR: string[]
  podCIDR: string[]
}

export interface RbacSubject {
  kind: 'User' | 'Group' | 'ServiceAccount'
  name: string
  /** ServiceAccount subjects only; defaults to the team namespace */
  namespace?: string
}

export interface TeamBuilder {
  name: string
  stack: string
  store: string
  order: Array<{group: Array<{id: string; version?: string; optional?: boolean}>}>
}

export interface TeamValues {
  name: string
  /** defaults to the team name */
  namespace: string
  /** the service account for the team's Images and Builders (default kpi-builds) */
  serviceAccount: string
  subjects: RbacSubject[]
  builders: TeamBuilder[]
}

export interface Values {
  registry: RegistryValues
  caCerts: string[]
  proxy?: ProxyValues
  cluster: ClusterValues
  teams: TeamValues[]
  kpack: {
    controller: WorkloadValues
    webhook: WebhookValues
    injector: WebhookValues
  }
}

export interface RenderOptions {
  /** skip the air-gap guard (tests of the guard itself render then walk) */
  skipAirGapGuard?: boolean
}
