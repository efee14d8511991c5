/**
 * cert-injection-webhook (github.com/vmware-tanzu/cert-injection-webhook), as its own `config/`
 * lays it out: namespace `cert-injection-webhook`, the ConfigMaps it reads the CA (`ca-cert`,
 * base64 of the PEM bundle) and the proxy (`http-proxy`, `https-proxy`, `no-proxy`) from, the
 * setup-ca-certs image (`setup-ca-certs-image`), its RBAC, the Deployment with `-label` args
 * naming what it matches, its Service and MutatingWebhookConfiguration. Names and paths are its
 * own, so its code finds what it expects. It adds to build pods (kpack labels every build pod
 * `kpack.io/build`) the proxy env and an init container (setup-ca-certs) that installs the CA.
 *
 * kpi's additions: labels, the values' scheduling and failurePolicy (Ignore, as it ships), and an
 * objectSelector on the same label, so the apiserver sends it build pods only rather than every pod.
 */
import type {CertInjectionImages} from '../bundle/types.js'
import {obj} from './meta.js'
import {registrySecret} from './platform.js'
import {caBundle, hasProxy, noProxyList, proxyHasCredentials} from './trust.js'
import type {RenderedObject} from './types.js'
import type {Values, WebhookValues} from '../values/types.js'
import {CERT_INJECTION_NS} from '../namespaces.js'

export const CERT_INJECTION_NAME = 'cert-injection-webhook'
export const CERT_INJECTION_SA = 'cert-injection-webhook-sa'
export const CERT_INJECTION_WEBHOOK = 'defaults.webhook.cert-injection.tanzu.vmware.com'
/** kpack labels every build pod with kpack.io/build: <build name> */
export const BUILD_POD_LABEL = 'kpack.io/build'
/** the registry credentials its pods pull its relocated image with (the name kpi gives them in team namespaces) */
export const CERT_INJECTION_PULL_SECRET = 'kpi-registry-credentials'

const rbacApi = 'rbac.authorization.k8s.io/v1'
const NS = CERT_INJECTION_NS

export interface CertInjectionRender {
  objects: RenderedObject[]
  warnings: string[]
}

/** Nothing when neither CA nor proxy is configured; a warning when they are but the bundle has no cert-injection-webhook. */
export function certInjection(v: Values, images: CertInjectionImages | undefined, w: WebhookValues): CertInjectionRender {
  const wantsCa = v.caCerts.length > 0
  const wantsProxy = hasProxy(v)
  if (!wantsCa && !wantsProxy) return {objects: [], warnings: []}
  if (!images) {
    const wants = [...(wantsCa ? ['the CA certificates (caCerts)'] : []), ...(wantsProxy ? ['the proxy'] : [])].join(' and ')
    const gets = [...(wantsCa ? ['trust the CA'] : []), ...(wantsProxy ? ['use the proxy'] : [])].join(' or ')
    return {objects: [], warnings: [`${wants} reach the kpack controller only: the bundle has no certInjection images, so build pods will not ${gets}; builds that reach the registry or the internet through them will fail`]}
  }
  const warnings: string[] = []
  // it writes the proxy settings as plain env values into every build pod spec
  const proxyOk = wantsProxy && !proxyHasCredentials(v)
  if (wantsProxy && !proxyOk) warnings.push('the proxy URL carries credentials: cert-injection-webhook would write them into every build pod spec, so build pods do not get the proxy; use a proxy that needs no credentials in its URL')
  const value = (s: string | undefined) => ({data: {value: s ?? ''}})
  const pullSecret = registrySecret('config', CERT_INJECTION_PULL_SECRET, NS, v.registry)
  const objects: RenderedObject[] = [
    obj('namespaces', 'v1', 'Namespace', {name: NS, labels: {'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'v1.25'}}),
    obj('rbac', 'v1', 'ServiceAccount', {name: CERT_INJECTION_SA, namespace: NS}),
    obj('rbac', rbacApi, 'Role', {name: 'cert-injection-webhook-role', namespace: NS}, {
      rules: [
        {apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch']},
        {apiGroups: [''], resources: ['secrets'], resourceNames: ['cert-injection-webhook-tls'], verbs: ['update']},
        {apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch']},
      ],
    }),
    obj('rbac', rbacApi, 'RoleBinding', {name: 'cert-injection-webhook-role-binding', namespace: NS}, {
      subjects: [{kind: 'ServiceAccount', name: CERT_INJECTION_SA, namespace: NS}],
      roleRef: {kind: 'Role', name: 'cert-injection-webhook-role', apiGroup: 'rbac.authorization.k8s.io'},
    }),
    obj('rbac', rbacApi, 'ClusterRole', {name: 'cert-injection-webhook-cluster-role'}, {
      rules: [
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [CERT_INJECTION_WEBHOOK], verbs: ['update', 'delete']},
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['get', 'list', 'watch']},
      ],
    }),
    obj('rbac', rbacApi, 'ClusterRoleBinding', {name: 'cert-injection-webhook-cluster-role-binding'}, {
      subjects: [{kind: 'ServiceAccount', name: CERT_INJECTION_SA, namespace: NS}],
      roleRef: {kind: 'ClusterRole', name: 'cert-injection-webhook-cluster-role', apiGroup: 'rbac.authorization.k8s.io'},
    }),
    // its own encoding: ca.crt holds the base64 of the PEM bundle
    obj('config', 'v1', 'ConfigMap', {name: 'ca-cert', namespace: NS}, {data: {'ca.crt': wantsCa ? Buffer.from(caBundle(v.caCerts)).toString('base64') : ''}}),
    obj('config', 'v1', 'ConfigMap', {name: 'http-proxy', namespace: NS}, value(proxyOk ? v.proxy?.httpProxy : undefined)),
    obj('config', 'v1', 'ConfigMap', {name: 'https-proxy', namespace: NS}, value(proxyOk ? v.proxy?.httpsProxy : undefined)),
    obj('config', 'v1', 'ConfigMap', {name: 'no-proxy', namespace: NS}, value(proxyOk ? noProxyList(v).join(',') : undefined)),
    obj('config', 'v1', 'ConfigMap', {name: 'setup-ca-certs-image', namespace: NS}, {data: {image: images.setupCaCerts}}),
    ...(pullSecret ? [pullSecret] : []),
    ...workload(images, w, pullSecret ? CERT_INJECTION_PULL_SECRET : undefined),
  ]
  return {objects, warnings}
}

function workload(images: CertInjectionImages, w: WebhookValues, pullSecret: string | undefined): RenderedObject[] {
  const labels = {app: CERT_INJECTION_NAME}
  const cmVolume = (name: string, configMap: string, path: string) => ({
    volume: {name, configMap: {name: configMap}},
    mount: {name, mountPath: `/run/config_maps/${path}`, readOnly: true},
  })
  const vols = [
    cmVolume('webhook-ca-cert', 'ca-cert', 'ca_cert'),
    cmVolume('http-proxy', 'http-proxy', 'http_proxy'),
    cmVolume('https-proxy', 'https-proxy', 'https_proxy'),
    cmVolume('no-proxy', 'no-proxy', 'no_proxy'),
  ]
  const quantities = (m?: Record<string, string | number>) => (m ? Object.fromEntries(Object.entries(m).map(([k, q]) => [k, String(q)])) : undefined)
  return [
    obj('kpack', 'v1', 'Secret', {name: 'cert-injection-webhook-tls', namespace: NS}),
    obj('kpack', 'apps/v1', 'Deployment', {name: CERT_INJECTION_NAME, namespace: NS, labels}, {
      spec: {
        replicas: w.replicas,
        selector: {matchLabels: labels},
        template: {
          metadata: {labels},
          spec: {
            serviceAccountName: CERT_INJECTION_SA,
            ...(pullSecret ? {imagePullSecrets: [{name: pullSecret}]} : {}),
            securityContext: {runAsNonRoot: true, seccompProfile: {type: 'RuntimeDefault'}},
            nodeSelector: {...(w.nodeSelector ?? {}), 'kubernetes.io/os': 'linux'},
            ...(w.tolerations?.length ? {tolerations: w.tolerations} : {}),
            containers: [{
              name: 'server',
              image: images.webhook,
              securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, privileged: false, seccompProfile: {type: 'RuntimeDefault'}, capabilities: {drop: ['ALL']}},
              args: [`-label=${BUILD_POD_LABEL}`],
              volumeMounts: vols.map((x) => x.mount),
              ports: [{containerPort: 8443, name: 'webhook-port'}],
              env: [
                {name: 'SETUP_CA_CERTS_IMAGE', valueFrom: {configMapKeyRef: {name: 'setup-ca-certs-image', key: 'image'}}},
                {name: 'SYSTEM_NAMESPACE', valueFrom: {fieldRef: {fieldPath: 'metadata.namespace'}}},
              ],
              ...(w.resources ? {resources: {...(w.resources.requests ? {requests: quantities(w.resources.requests)} : {}), ...(w.resources.limits ? {limits: quantities(w.resources.limits)} : {})}} : {}),
            }],
            volumes: vols.map((x) => x.volume),
          },
        },
      },
    }),
    obj('kpack', 'v1', 'Service', {name: CERT_INJECTION_NAME, namespace: NS}, {
      spec: {selector: labels, ports: [{port: 443, targetPort: 'webhook-port'}]},
    }),
    obj('kpack', 'admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', {name: CERT_INJECTION_WEBHOOK}, {
      webhooks: [{
        name: CERT_INJECTION_WEBHOOK,
        admissionReviewVersions: ['v1'],
        clientConfig: {service: {name: CERT_INJECTION_NAME, namespace: NS, path: '/certinjectionwebhook', port: 443}},
        failurePolicy: w.failurePolicy,
        matchPolicy: 'Exact',
        rules: [{operations: ['CREATE', 'UPDATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods']}],
        objectSelector: {matchExpressions: [{key: BUILD_POD_LABEL, operator: 'Exists'}]},
        sideEffects: 'None',
      }],
    }),
  ]
}
