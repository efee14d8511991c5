/** The values file after loading: defaults filled, alternatives resolved (see docs/values.md; the JSON schema is schema.ts). */

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

export interface RegistryValues extends RegistryCredentials {
  /** host[:port] of the registry the lock points at */
  server: string
  /** repository prefix under the server, e.g. `platform/kpack` */
  repository: string
}

/** A registry account as the values resolve it (files read). */
export interface RegistryCredentials {
  username?: string
  /** resolved from `password` or `passwordFile` */
  password?: string
  /** resolved from `dockerConfigJson` or `dockerConfigJsonFile`: the whole docker config JSON text */
  dockerConfigJson?: string
}

/** A team's own account on the platform's registry server, and where its Builders go. */
export interface TeamRegistryValues extends RegistryCredentials {
  /** repository prefix on registry.server */
  repository?: string
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
  /** the team's own registry account (when given: its namespace gets it, not the platform's) */
  registry?: TeamRegistryValues
}

/** kpack's feature flags, each a variable of the controller's environment (kpack's defaults filled in). */
export interface KpackFeatureFlags {
  injectedSidecarSupport: boolean
  priorityClasses: boolean
  slsaAttestation: boolean
  /** kpack 0.17 and later */
  gitShallowClone: boolean
  sshTrustUnknownHosts: boolean
}

export interface Values {
  registry: RegistryValues
  caCerts: string[]
  proxy?: ProxyValues
  cluster: ClusterValues
  teams: TeamValues[]
  kpack: {
    /** scalingFactor: absent means kpack's (KPACK_SCALING_FACTOR_DEFAULT) */
    controller: WorkloadValues & {scalingFactor?: number}
    webhook: WebhookValues
    /** absent: kpack's defaults (KPACK_FEATURE_DEFAULTS) */
    features?: KpackFeatureFlags
  }
  /** cert-injection-webhook's Deployment and webhook (when the bundle has certInjection images) */
  certInjection: WebhookValues
}
