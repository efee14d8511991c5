/**
 * Private CA certificates and the HTTP proxy: how they reach the kpack controller (it talks to the
 * registry) and, through an injector webhook when the bundle ships one, the build pods.
 *
 * CA: Go's crypto/x509 (the controller is Go) reads the first of its known bundle files
 * (/etc/ssl/certs/ca-certificates.crt, ...) unless SSL_CERT_FILE is set, then every file in the
 * SSL_CERT_DIR directories, which replace its default directories. So kpi leaves SSL_CERT_FILE
 * alone, mounts the CAs in a directory of their own and sets SSL_CERT_DIR to Go's defaults plus
 * that directory: the system CAs stay trusted, nothing in the image is shadowed.
 *
 * Proxy: Go's ProxyFromEnvironment reads HTTP_PROXY/HTTPS_PROXY/NO_PROXY (and the lowercase forms,
 * which other tools prefer). Cluster-internal destinations always go into NO_PROXY so the
 * controller keeps reaching the apiserver and services. A proxy URL with user:password in it is a
 * credential: then the URLs live in a Secret and the env refers to it.
 */
import {KPACK_NAMESPACE as NS, obj} from './meta.js'
import type {Values, WebhookValues} from '../values/types.js'
import type {RenderedObject} from './types.js'

export const CA_CONFIGMAP = 'kpi-ca-certs'
export const CA_KEY = 'ca.crt'
export const CA_DIR = '/etc/ssl/kpi'
// Go's default certificate directories on Linux, kept so the system CAs stay trusted
export const GO_CERT_DIRS = ['/etc/ssl/certs', '/etc/pki/tls/certs']
export const PROXY_SECRET = 'kpi-proxy'

export const INJECTOR = 'kpi-injector'
export const INJECTOR_WEBHOOK = 'kpi-injector.kpi.dev'
export const INJECTOR_CERTS = 'kpi-injector-certs'
/** kpack labels every build pod with kpack.io/build: <build name> */
export const BUILD_POD_LABEL = 'kpack.io/build'

type EnvVar = Record<string, unknown>

export interface ControllerTrust {
  env: EnvVar[]
  volumes: Record<string, unknown>[]
  volumeMounts: Record<string, unknown>[]
}

/** PEM texts joined into one bundle file, each certificate block on its own lines. */
export function caBundle(caCerts: string[]): string {
  const blocks: string[] = []
  for (const pem of caCerts) {
    for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)) blocks.push(m[0].replace(/\r\n/g, '\n'))
  }
  return blocks.join('\n') + '\n'
}

/** NO_PROXY entries: the user's, then the cluster-internal ones, without duplicates. */
export function noProxyList(values: Values): string[] {
  const domain = values.cluster.domain
  const internal = [
    'localhost',
    '127.0.0.1',
    '::1',
    'kubernetes',
    'kubernetes.default',
    'kubernetes.default.svc',
    `kubernetes.default.svc.${domain}`,
    '.svc',
    `.${domain}`,
    ...values.cluster.serviceCIDR,
    ...values.cluster.podCIDR,
  ]
  const seen = new Set<string>()
  const out: string[] = []
  for (const e of [...(values.proxy?.noProxy ?? []), ...internal]) {
    const k = e.toLowerCase()
    if (!seen.has(k)) {
      seen.add(k)
      out.push(e)
    }
  }
  return out
}

export const hasProxy = (v: Values): boolean => !!(v.proxy?.httpProxy || v.proxy?.httpsProxy)
const proxyHasCredentials = (v: Values): boolean =>
  [v.proxy?.httpProxy, v.proxy?.httpsProxy].some((u) => {
    if (!u) return false
    const url = new URL(u)
    return !!(url.username || url.password)
  })

/** The proxy settings by env name (HTTP_PROXY, HTTPS_PROXY, NO_PROXY). */
function proxySettings(v: Values): Array<[string, string]> {
  if (!hasProxy(v)) return []
  const out: Array<[string, string]> = []
  if (v.proxy?.httpProxy) out.push(['HTTP_PROXY', v.proxy.httpProxy])
  if (v.proxy?.httpsProxy) out.push(['HTTPS_PROXY', v.proxy.httpsProxy])
  out.push(['NO_PROXY', noProxyList(v).join(',')])
  return out
}

/** Env vars carrying the proxy, upper and lower case, named `prefix + name`: values, or Secret refs. */
function proxyEnv(v: Values, prefix = '', lowercase = true): EnvVar[] {
  const secret = proxyHasCredentials(v)
  const env: EnvVar[] = []
  for (const [name, value] of proxySettings(v)) {
    const val = secret ? {valueFrom: {secretKeyRef: {name: PROXY_SECRET, key: name}}} : {value}
    env.push({name: prefix + name, ...val})
    if (lowercase) env.push({name: prefix + name.toLowerCase(), ...val})
  }
  return env
}

/** The config-stage objects CA and proxy need (a ConfigMap of CAs, a Secret for a proxy with credentials). */
export function trustConfig(v: Values): RenderedObject[] {
  const out: RenderedObject[] = []
  if (v.caCerts.length) out.push(obj('config', 'v1', 'ConfigMap', {name: CA_CONFIGMAP, namespace: NS}, {data: {[CA_KEY]: caBundle(v.caCerts)}}))
  if (hasProxy(v) && proxyHasCredentials(v)) {
    out.push(
      obj('config', 'v1', 'Secret', {name: PROXY_SECRET, namespace: NS}, {
        type: 'Opaque',
        data: Object.fromEntries(proxySettings(v).map(([k, val]) => [k, Buffer.from(val).toString('base64')])),
      }),
    )
  }
  return out
}

export function controllerTrust(v: Values): ControllerTrust {
  const t: ControllerTrust = {env: proxyEnv(v), volumes: [], volumeMounts: []}
  if (v.caCerts.length) {
    t.env.push({name: 'SSL_CERT_DIR', value: [...GO_CERT_DIRS, CA_DIR].join(':')})
    t.volumes.push({name: CA_CONFIGMAP, configMap: {name: CA_CONFIGMAP}})
    t.volumeMounts.push({name: CA_CONFIGMAP, mountPath: CA_DIR, readOnly: true})
  }
  return t
}

/**
 * Build pods: kpack gives them no CA or proxy settings of its own, so a mutating webhook (the
 * bundle's `kpack.images.injector`) adds them to pods labelled kpack.io/build. Its contract (env):
 * INJECT_LABEL (pods to mutate: those carrying this label), INJECT_CA_FILE (PEM bundle to add to
 * the pod's trust), INJECT_HTTP_PROXY/INJECT_HTTPS_PROXY/INJECT_NO_PROXY (env to add), and
 * WEBHOOK_NAME/WEBHOOK_SERVICE/WEBHOOK_CERTS_SECRET/SYSTEM_NAMESPACE: like kpack's webhook, it
 * keeps its serving certificate in that Secret and writes its CA into the webhook configuration.
 */
export function injector(v: Values, image: string | undefined, w: WebhookValues): {rbac: RenderedObject[]; workload: RenderedObject[]; warnings: string[]} {
  const wants = [...(v.caCerts.length ? ['the CA certificates (caCerts)'] : []), ...(hasProxy(v) ? ['the proxy'] : [])]
  if (!wants.length) return {rbac: [], workload: [], warnings: []}
  if (!image) {
    return {
      rbac: [],
      workload: [],
      warnings: [
        `${wants.join(' and ')} reach the kpack controller only: the bundle has no kpack.images.injector, so build pods will not ${[
          ...(v.caCerts.length ? ['trust the CA'] : []),
          ...(hasProxy(v) ? ['use the proxy'] : []),
        ].join(' or ')}; builds that reach the registry or the internet through them will fail`,
      ],
    }
  }
  const rbacApi = 'rbac.authorization.k8s.io/v1'
  const rbac = [
    obj('rbac', 'v1', 'ServiceAccount', {name: INJECTOR, namespace: NS}),
    obj('rbac', rbacApi, 'Role', {name: INJECTOR, namespace: NS}, {
      rules: [
        {apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch']},
        {apiGroups: [''], resources: ['secrets'], resourceNames: [INJECTOR_CERTS], verbs: ['update']},
        {apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch']},
        {apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'create', 'update', 'delete', 'patch', 'watch']},
      ],
    }),
    obj('rbac', rbacApi, 'RoleBinding', {name: INJECTOR, namespace: NS}, {
      subjects: [{kind: 'ServiceAccount', name: INJECTOR, namespace: NS}],
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: INJECTOR},
    }),
    obj('rbac', rbacApi, 'ClusterRole', {name: INJECTOR}, {
      rules: [
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['get', 'list', 'watch']},
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [INJECTOR_WEBHOOK], verbs: ['update', 'patch']},
      ],
    }),
    obj('rbac', rbacApi, 'ClusterRoleBinding', {name: INJECTOR}, {
      subjects: [{kind: 'ServiceAccount', name: INJECTOR, namespace: NS}],
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: INJECTOR},
    }),
  ]
  const env: EnvVar[] = [
    {name: 'INJECT_LABEL', value: BUILD_POD_LABEL},
    ...(v.caCerts.length ? [{name: 'INJECT_CA_FILE', value: `${CA_DIR}/${CA_KEY}`}] : []),
    ...proxyEnv(v, 'INJECT_', false),
    {name: 'WEBHOOK_NAME', value: INJECTOR_WEBHOOK},
    {name: 'WEBHOOK_SERVICE', value: INJECTOR},
    {name: 'WEBHOOK_CERTS_SECRET', value: INJECTOR_CERTS},
    {name: 'SYSTEM_NAMESPACE', valueFrom: {fieldRef: {fieldPath: 'metadata.namespace'}}},
  ]
  const workload = [
    obj('kpack', 'v1', 'Secret', {name: INJECTOR_CERTS, namespace: NS}),
    obj('kpack', 'v1', 'Service', {name: INJECTOR, namespace: NS}, {
      spec: {ports: [{name: 'https-webhook', port: 443, targetPort: 8443}], selector: {app: INJECTOR}},
    }),
    obj('kpack', 'apps/v1', 'Deployment', {name: INJECTOR, namespace: NS}, {
      spec: {
        replicas: w.replicas,
        selector: {matchLabels: {app: INJECTOR}},
        template: {
          metadata: {labels: {app: INJECTOR}},
          spec: {
            securityContext: {runAsNonRoot: true, seccompProfile: {type: 'RuntimeDefault'}},
            priorityClassName: 'kpack-control-plane',
            serviceAccountName: INJECTOR,
            nodeSelector: {...(w.nodeSelector ?? {}), 'kubernetes.io/os': 'linux'},
            ...(w.tolerations?.length ? {tolerations: w.tolerations} : {}),
            containers: [
              {
                name: 'injector',
                image,
                securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, privileged: false, capabilities: {drop: ['ALL']}, seccompProfile: {type: 'RuntimeDefault'}},
                ports: [{name: 'https-webhook', containerPort: 8443}],
                env,
                resources: w.resources
                  ? Object.fromEntries(Object.entries(w.resources).map(([k, m]) => [k, Object.fromEntries(Object.entries(m ?? {}).map(([r, q]) => [r, String(q)]))]))
                  : {requests: {cpu: '10m', memory: '50Mi'}, limits: {cpu: '100m', memory: '200Mi'}},
                ...(v.caCerts.length ? {volumeMounts: [{name: CA_CONFIGMAP, mountPath: CA_DIR, readOnly: true}]} : {}),
              },
            ],
            ...(v.caCerts.length ? {volumes: [{name: CA_CONFIGMAP, configMap: {name: CA_CONFIGMAP}}]} : {}),
          },
        },
      },
    }),
    obj('kpack', 'admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', {name: INJECTOR_WEBHOOK}, {
      webhooks: [
        {
          name: INJECTOR_WEBHOOK,
          admissionReviewVersions: ['v1'],
          clientConfig: {service: {name: INJECTOR, namespace: NS, path: '/mutate', port: 443}},
          rules: [{apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced'}],
          objectSelector: {matchExpressions: [{key: BUILD_POD_LABEL, operator: 'Exists'}]},
          failurePolicy: w.failurePolicy,
          matchPolicy: 'Equivalent',
          reinvocationPolicy: 'Never',
          sideEffects: 'None',
          timeoutSeconds: 10,
        },
      ],
    }),
  ]
  return {rbac, workload, warnings: []}
}
