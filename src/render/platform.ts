/**
 * The platform's kpack resources: the registry credentials kpack pushes builders with, kp's
 * configuration, the lifecycle, and one ClusterStack / ClusterStore / ClusterBuilder per bundle entry.
 *
 * The service account and secret follow the names `kp` and Tanzu Build Service use
 * (kp-default-repository-serviceaccount / kp-default-repository-secret in namespace kpack), so the
 * kp CLI and kpi agree on where builders go and with which credentials.
 */
import type {Builder, BuilderOrderEntry, Bundle} from '../bundle/types.js'
import {KPACK_NAMESPACE as NS} from '../namespaces.js'
import {obj} from './meta.js'
import type {RegistryCredentials, RegistryValues} from '../values/types.js'
import type {RenderedObject} from './types.js'

export const REGISTRY_SA = 'kp-default-repository-serviceaccount'
export const REGISTRY_SECRET = 'kp-default-repository-secret'
export const KP_CONFIG = 'kp-config'
export const LIFECYCLE_CONFIGMAP = 'lifecycle-image'
export const CLUSTER_LIFECYCLE = 'default-lifecycle'

const byName = <T extends {name: string}>(xs: T[]): T[] => [...xs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))

export const hasCredentials = (r: RegistryCredentials): boolean => !!(r.dockerConfigJson || (r.username && r.password))

/** `<server>/<repository>`: the prefix every image and builder tag sits under. */
export const registryPrefix = (r: RegistryValues): string => (r.repository ? `${r.server}/${r.repository}` : r.server)

/** The .dockerconfigjson text: the user's own, or one built from username/password. */
export function dockerConfigJson(r: RegistryValues): string | undefined {
  if (r.dockerConfigJson) return r.dockerConfigJson
  if (!r.username || !r.password) return undefined
  const auth = Buffer.from(`${r.username}:${r.password}`).toString('base64')
  return JSON.stringify({auths: {[r.server]: {username: r.username, password: r.password, auth}}})
}

/** A kubernetes.io/dockerconfigjson Secret: the only place credentials are written. */
export function registrySecret(stage: 'config' | 'teams', name: string, namespace: string, r: RegistryValues): RenderedObject | undefined {
  const json = dockerConfigJson(r)
  if (json === undefined) return undefined
  return obj(stage, 'v1', 'Secret', {name, namespace}, {
    type: 'kubernetes.io/dockerconfigjson',
    data: {'.dockerconfigjson': Buffer.from(json).toString('base64')},
  })
}

/** A service account whose secret kpack uses to pull and push (secrets) and the kubelet to pull (imagePullSecrets). */
export function registryServiceAccount(stage: 'config' | 'teams', name: string, namespace: string, secret: string | undefined): RenderedObject {
  return obj(stage, 'v1', 'ServiceAccount', {name, namespace}, secret ? {secrets: [{name: secret}], imagePullSecrets: [{name: secret}]} : {})
}

export function registryConfig(r: RegistryValues): RenderedObject[] {
  const secret = registrySecret('config', REGISTRY_SECRET, NS, r)
  const prefix = registryPrefix(r)
  return [
    ...(secret ? [secret] : []),
    registryServiceAccount('config', REGISTRY_SA, NS, secret ? REGISTRY_SECRET : undefined),
    obj('config', 'v1', 'ConfigMap', {name: KP_CONFIG, namespace: NS}, {
      data: {
        'default.repository': prefix,
        'default.repository.serviceaccount': REGISTRY_SA,
        'default.repository.serviceaccount.namespace': NS,
        // older kp releases read the canonical.* keys
        'canonical.repository': prefix,
        'canonical.repository.serviceaccount': REGISTRY_SA,
      },
    }),
  ]
}

const saRef = {name: REGISTRY_SA, namespace: NS}

export function lifecycle(bundle: Bundle, clusterLifecycle: boolean, r: RegistryValues): RenderedObject {
  const creds = hasCredentials(r)
  if (clusterLifecycle) {
    return obj('lifecycle', 'kpack.io/v1alpha2', 'ClusterLifecycle', {name: CLUSTER_LIFECYCLE}, {
      spec: {image: bundle.lifecycle.image, ...(creds ? {serviceAccountRef: saRef} : {})},
    })
  }
  // kpack < 0.17 watches this ConfigMap from startup (a missing one stops the controller), so it
  // goes with the other ConfigMaps kpack reads, before the Deployments
  return obj('config', 'v1', 'ConfigMap', {name: LIFECYCLE_CONFIGMAP, namespace: NS}, {
    data: {
      image: bundle.lifecycle.image,
      // kpack pulls the lifecycle with this service account's secrets (kp lifecycle update writes the same keys)
      ...(creds ? {'serviceAccountRef.name': REGISTRY_SA, 'serviceAccountRef.namespace': NS} : {}),
    },
  })
}

export function clusterStacks(bundle: Bundle, r: RegistryValues): RenderedObject[] {
  const creds = hasCredentials(r)
  return byName(bundle.stacks).map((s) =>
    obj('stacks', 'kpack.io/v1alpha2', 'ClusterStack', {name: s.name}, {
      spec: {id: s.id, buildImage: {image: s.buildImage}, runImage: {image: s.runImage}, ...(creds ? {serviceAccountRef: saRef} : {})},
    }),
  )
}

export function clusterStores(bundle: Bundle, r: RegistryValues): RenderedObject[] {
  const creds = hasCredentials(r)
  return byName(bundle.stores).map((s) =>
    obj('stores', 'kpack.io/v1alpha2', 'ClusterStore', {name: s.name}, {
      spec: {sources: s.sources.map((src) => ({image: src.image})), ...(creds ? {serviceAccountRef: saRef} : {})},
    }),
  )
}

/** Order entries with only the fields kpack knows (a bundle may carry descriptive extras). */
export function kpackOrder(order: BuilderOrderEntry[]): BuilderOrderEntry[] {
  return order.map((e) => ({
    group: e.group.map((g) => ({
      id: g.id,
      ...(g.version !== undefined ? {version: g.version} : {}),
      ...(g.optional !== undefined ? {optional: g.optional} : {}),
    })),
  }))
}

export function builderTag(r: RegistryValues, name: string, namespace?: string): string {
  return `${registryPrefix(r)}/builders/${namespace ? `${namespace}/` : ''}${name}`
}

export function clusterBuilders(bundle: Bundle, r: RegistryValues): RenderedObject[] {
  return byName(bundle.builders.filter((b) => !b.namespace)).map((b: Builder) =>
    obj('builders', 'kpack.io/v1alpha2', 'ClusterBuilder', {name: b.name}, {
      spec: {
        tag: builderTag(r, b.name),
        stack: {kind: 'ClusterStack', name: b.stack},
        store: {kind: 'ClusterStore', name: b.store},
        order: kpackOrder(b.order),
        serviceAccountRef: saRef,
      },
    }),
  )
}
