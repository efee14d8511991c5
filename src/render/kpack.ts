/**
 * kpack itself, as kpack's release config lays it out (config/controller.yaml, webhook.yaml,
 * controllerrole.yaml, webhookrole.yaml, priority.yaml, config-logging.yaml): names, service
 * accounts (`controller`, `webhook`), environment and RBAC are kpack's, so kpack's code finds what
 * it expects. kpi adds labels, the values' scheduling settings and the CA/proxy wiring (trust.ts).
 */
import type {Bundle} from '../bundle/types.js'
import {convertedCrdNames, type KpackFeatures} from './crds.js'
import {KPACK_NAMESPACE as NS} from '../namespaces.js'
import {obj} from './meta.js'
import type {ControllerTrust} from './trust.js'
import {KPACK_FEATURE_DEFAULTS, KPACK_SCALING_FACTOR_DEFAULT} from '../values/defaults.js'
import type {ResourceRequirements, Values, WorkloadValues} from '../values/types.js'
import type {RenderedObject} from './types.js'

export const CONTROLLER_SA = 'controller'
export const WEBHOOK_SA = 'webhook'
export const WEBHOOK_SERVICE = 'kpack-webhook'
export const MUTATING_WEBHOOK = 'defaults.webhook.kpack.io'
export const VALIDATING_WEBHOOK = 'validation.webhook.kpack.io'

/** The helper images the controller reads from ConfigMaps (key `image`), as kpack names them. */
export const IMAGE_CONFIGMAPS = [
  {configMap: 'build-init-image', env: 'BUILD_INIT_IMAGE', image: 'buildInit'},
  {configMap: 'build-waiter-image', env: 'BUILD_WAITER_IMAGE', image: 'buildWaiter'},
  {configMap: 'rebase-image', env: 'REBASE_IMAGE', image: 'rebase'},
  {configMap: 'completion-image', env: 'COMPLETION_IMAGE', image: 'completion'},
] as const

const rbacApi = 'rbac.authorization.k8s.io/v1'
const allVerbs = ['get', 'list', 'create', 'update', 'delete', 'patch', 'watch']

/** kpack's own namespace, with the Pod Security level kpack's release gives it (its pods meet it). */
export function kpackNamespace(): RenderedObject {
  return obj('namespaces', 'v1', 'Namespace', {name: NS, labels: {
    'pod-security.kubernetes.io/enforce': 'restricted',
    'pod-security.kubernetes.io/enforce-version': 'v1.25',
  }})
}

export function kpackRbac(f: KpackFeatures): RenderedObject[] {
  const kpackResources = [
    'builds', 'builds/status', 'builds/finalizers',
    'images', 'images/status', 'images/finalizers',
    'builders', 'builders/status',
    'buildpacks', 'buildpacks/status',
    'clusterbuilders', 'clusterbuilders/status',
    'clusterbuildpacks', 'clusterbuildpacks/status',
    'clusterstores', 'clusterstores/status',
    'clusterstacks', 'clusterstacks/status',
    ...(f.clusterLifecycle ? ['clusterlifecycles', 'clusterlifecycles/status'] : []),
    'sourceresolvers', 'sourceresolvers/status',
  ]
  const binding = (kind: 'ClusterRoleBinding' | 'RoleBinding', name: string, role: string, sa: string, roleKind = kind === 'RoleBinding' ? 'Role' : 'ClusterRole') =>
    obj('rbac', rbacApi, kind, {name, ...(kind === 'RoleBinding' ? {namespace: NS} : {})}, {
      subjects: [{kind: 'ServiceAccount', name: sa, namespace: NS}],
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: roleKind, name: role},
    })
  return [
    obj('rbac', 'v1', 'ServiceAccount', {name: CONTROLLER_SA, namespace: NS}),
    obj('rbac', rbacApi, 'ClusterRole', {name: 'kpack-controller-admin'}, {
      rules: [
        {apiGroups: ['kpack.io'], resources: kpackResources, verbs: allVerbs},
        // pods/log: a failed Build's message quotes the failing step's last log line; namespaces:
        // a Build's SLSA attestation records its namespace
        {apiGroups: [''], resources: ['secrets', 'pods/log', 'namespaces'], verbs: ['get']},
        {apiGroups: [''], resources: ['serviceaccounts'], verbs: ['get', 'list']},
        {apiGroups: [''], resources: ['persistentvolumeclaims', 'pods'], verbs: ['get', 'list', 'create', 'update', 'delete', 'watch']},
        // with kpack's injected-sidecar support (a feature flag) it marks a build pod whose
        // containers are all ready (the annotation its build-waiter waits for) and ends a finished
        // one by setting activeDeadlineSeconds: both merge patches, refused without this
        {apiGroups: [''], resources: ['pods'], verbs: ['patch']},
        {apiGroups: [''], resources: ['nodes'], verbs: ['list']},
        {apiGroups: [''], resources: ['events'], verbs: ['create', 'patch']},
        {apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'create', 'update', 'delete', 'patch', 'watch']},
      ],
    }),
    binding('ClusterRoleBinding', 'kpack-controller-admin-binding', 'kpack-controller-admin', CONTROLLER_SA),
    obj('rbac', rbacApi, 'ClusterRole', {name: 'kpack-controller-servicebindings-cluster-role'}, {
      aggregationRule: {clusterRoleSelectors: [{matchLabels: {'servicebinding.io/controller': 'true'}}]},
    }),
    binding('ClusterRoleBinding', 'kpack-controller-servicebindings-binding', 'kpack-controller-servicebindings-cluster-role', CONTROLLER_SA),
    obj('rbac', rbacApi, 'Role', {name: 'kpack-controller-local-config', namespace: NS}, {
      rules: [{apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch']}],
    }),
    binding('RoleBinding', 'kpack-controller-local-config-binding', 'kpack-controller-local-config', CONTROLLER_SA),

    obj('rbac', 'v1', 'ServiceAccount', {name: WEBHOOK_SA, namespace: NS}),
    obj('rbac', rbacApi, 'Role', {name: 'kpack-webhook-certs-admin', namespace: NS}, {
      rules: [
        {apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch']},
        {apiGroups: [''], resources: ['secrets'], resourceNames: ['webhook-certs'], verbs: ['update']},
        {apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch']},
        {apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'create', 'update', 'delete', 'patch', 'watch']},
      ],
    }),
    binding('RoleBinding', 'kpack-webhook-certs-admin-binding', 'kpack-webhook-certs-admin', WEBHOOK_SA),
    obj('rbac', rbacApi, 'ClusterRole', {name: 'kpack-webhook-mutatingwebhookconfiguration-admin'}, {
      rules: [
        {apiGroups: [''], resources: ['namespaces'], resourceNames: [NS], verbs: ['get']},
        // the webhook makes the namespace the owner of cluster-scoped objects it creates
        {apiGroups: [''], resources: ['namespaces/finalizers'], resourceNames: [NS], verbs: ['update']},
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [MUTATING_WEBHOOK], verbs: ['update', 'delete']},
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['get', 'list', 'watch']},
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['validatingwebhookconfigurations'], resourceNames: [VALIDATING_WEBHOOK], verbs: ['update', 'delete']},
        {apiGroups: ['admissionregistration.k8s.io'], resources: ['validatingwebhookconfigurations'], verbs: ['get', 'list', 'watch']},
        {apiGroups: ['storage.k8s.io'], resources: ['storageclasses'], verbs: ['get', 'list', 'watch']},
        // it writes its CA into the conversion config of the CRDs it converts (as kpack's own role)
        {apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], resourceNames: convertedCrdNames(f), verbs: ['update']},
        {apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], verbs: ['get', 'list', 'watch']},
      ],
    }),
    binding('ClusterRoleBinding', 'kpack-webhook-certs-mutatingwebhookconfiguration-admin-binding', 'kpack-webhook-mutatingwebhookconfiguration-admin', WEBHOOK_SA),
  ]
}

/** The ConfigMaps kpack's Deployments read, and its priority classes. */
export function kpackConfig(bundle: Bundle): RenderedObject[] {
  const out: RenderedObject[] = []
  for (const p of [
    {name: 'kpack-control-plane', value: 10000, description: 'Super High priority class for kpack control plane components'},
    {name: 'kpack-build-high-priority', value: 1000, description: 'High priority class for kpack builds triggered by user changes.'},
    {name: 'kpack-build-low-priority', value: 1, description: 'Low priority class for kpack builds triggered by operator changes.', preemptionPolicy: 'Never'},
  ]) {
    const {name, ...rest} = p
    out.push(obj('config', 'scheduling.k8s.io/v1', 'PriorityClass', {name}, {globalDefault: false, ...rest}))
  }
  out.push(
    obj('config', 'v1', 'ConfigMap', {name: 'config-logging', namespace: NS}, {
      data: {
        'zap-logger-config': JSON.stringify(
          {
            level: 'info',
            development: false,
            outputPaths: ['stdout'],
            errorOutputPaths: ['stderr'],
            encoding: 'json',
            // the empty encoders are kpack's: they replace knative's zapdriver defaults ("INFO",
            // "1.5s") with zap's (info, 1.5), the format log queries written for kpack expect
            encoderConfig: {
              timeKey: 'ts', levelKey: 'level', nameKey: 'logger', callerKey: 'caller', messageKey: 'msg', stacktraceKey: 'stacktrace',
              lineEnding: '', levelEncoder: '', timeEncoder: 'rfc3339nano', durationEncoder: '', callerEncoder: '',
            },
          },
          null,
          2,
        ),
      },
    }),
  )
  for (const c of IMAGE_CONFIGMAPS) {
    out.push(obj('config', 'v1', 'ConfigMap', {name: c.configMap, namespace: NS}, {data: {image: bundle.kpack.images[c.image]}}))
  }
  return out
}

function scheduling(w: WorkloadValues): Record<string, unknown> {
  return {
    nodeSelector: {...(w.nodeSelector ?? {}), 'kubernetes.io/os': 'linux'},
    ...(w.tolerations?.length ? {tolerations: w.tolerations} : {}),
  }
}

/** Quantities as strings: Kubernetes accepts both, and strings keep the YAML unambiguous. */
function resources(r: ResourceRequirements | undefined, dflt: ResourceRequirements): ResourceRequirements {
  const src = r ?? dflt
  const q = (m?: Record<string, string | number>) => (m ? Object.fromEntries(Object.entries(m).map(([k, v]) => [k, String(v)])) : undefined)
  return {...(src.requests ? {requests: q(src.requests)} : {}), ...(src.limits ? {limits: q(src.limits)} : {})}
}

const restrictedPod = {runAsNonRoot: true, seccompProfile: {type: 'RuntimeDefault'}}
const restrictedContainer = {
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  privileged: false,
  seccompProfile: {type: 'RuntimeDefault'},
  capabilities: {drop: ['ALL']},
}

/**
 * `pullSecret`: the registry's dockerconfigjson Secret in kpack's namespace, when the values give
 * credentials. The kubelet pulls kpack's relocated images from that registry too.
 */
export function kpackWorkloads(bundle: Bundle, kpack: Values['kpack'], trust: ControllerTrust, pullSecret?: string): RenderedObject[] {
  const {controller, webhook} = kpack
  const features = kpack.features ?? KPACK_FEATURE_DEFAULTS
  const version = bundle.kpack.version
  const pull = pullSecret ? {imagePullSecrets: [{name: pullSecret}]} : {}
  const fieldEnv = (name: string, path: string) => ({name, valueFrom: {fieldRef: {fieldPath: path}}})
  const flag = (name: string, on: boolean) => ({name, value: String(on)})
  const controllerEnv = [
    flag('ENABLE_PRIORITY_CLASSES', features.priorityClasses),
    flag('INJECTED_SIDECAR_SUPPORT', features.injectedSidecarSupport),
    flag('EXPERIMENTAL_GENERATE_SLSA_ATTESTATION', features.slsaAttestation),
    flag('INSECURE_SSH_TRUST_UNKNOWN_HOSTS', features.sshTrustUnknownHosts),
    // kpack's release leaves it out; render refused it for a kpack that does not read it
    ...(features.gitShallowClone ? [flag('GIT_RESOLVER_USE_SHALLOW_CLONE', true)] : []),
    {name: 'CONFIG_LOGGING_NAME', value: 'config-logging'},
    {name: 'CONFIG_OBSERVABILITY_NAME', value: 'config-observability'},
    {name: 'METRICS_DOMAIN', value: 'kpack.io'},
    {name: 'SCALING_FACTOR', value: String(controller.scalingFactor ?? KPACK_SCALING_FACTOR_DEFAULT)},
    fieldEnv('SYSTEM_NAMESPACE', 'metadata.namespace'),
    {name: 'SYSTEM_SERVICE_ACCOUNT', value: CONTROLLER_SA},
    ...IMAGE_CONFIGMAPS.map((c) => ({name: c.env, valueFrom: {configMapKeyRef: {name: c.configMap, key: 'image'}}})),
    ...trust.env,
  ]
  const controllerDeployment = obj('kpack', 'apps/v1', 'Deployment', {name: 'kpack-controller', namespace: NS}, {
    spec: {
      replicas: controller.replicas,
      selector: {matchLabels: {app: 'kpack-controller'}},
      template: {
        metadata: {labels: {app: 'kpack-controller', version}},
        spec: {
          securityContext: restrictedPod,
          priorityClassName: 'kpack-control-plane',
          serviceAccountName: CONTROLLER_SA,
          ...pull,
          ...scheduling(controller),
          containers: [
            {
              name: 'controller',
              image: bundle.kpack.images.controller,
              securityContext: restrictedContainer,
              env: controllerEnv,
              resources: resources(controller.resources, {requests: {cpu: '20m', memory: '1Gi'}, limits: {memory: '1Gi'}}),
              ...(trust.volumeMounts.length ? {volumeMounts: trust.volumeMounts} : {}),
            },
          ],
          ...(trust.volumes.length ? {volumes: trust.volumes} : {}),
        },
      },
    },
  })
  const webhookDeployment = obj('kpack', 'apps/v1', 'Deployment', {name: 'kpack-webhook', namespace: NS}, {
    spec: {
      replicas: webhook.replicas,
      selector: {matchLabels: {app: 'kpack-webhook'}},
      template: {
        metadata: {labels: {app: 'kpack-webhook', role: 'webhook', version}},
        spec: {
          securityContext: restrictedPod,
          priorityClassName: 'kpack-control-plane',
          serviceAccountName: WEBHOOK_SA,
          ...pull,
          ...scheduling(webhook),
          containers: [
            {
              name: 'webhook',
              image: bundle.kpack.images.webhook,
              securityContext: restrictedContainer,
              ports: [{name: 'https-webhook', containerPort: 8443}],
              env: [
                {name: 'CONFIG_LOGGING_NAME', value: 'config-logging'},
                {name: 'CONFIG_OBSERVABILITY_NAME', value: 'config-observability'},
                {name: 'METRICS_DOMAIN', value: 'kpack.io'},
                fieldEnv('SYSTEM_NAMESPACE', 'metadata.namespace'),
              ],
              resources: resources(webhook.resources, {requests: {cpu: '10m', memory: '50Mi'}, limits: {cpu: '100m', memory: '200Mi'}}),
            },
          ],
        },
      },
    },
  })
  // kpack ships the webhook configurations without rules or caBundle: the webhook fills both in
  // (and the service path) when it starts, so until kpack-webhook runs they intercept nothing. kpi
  // sets none of the fields the webhook writes, so server-side apply leaves them to it.
  const webhookEntry = (name: string) => ({
    name,
    admissionReviewVersions: ['v1'],
    clientConfig: {service: {name: WEBHOOK_SERVICE, namespace: NS}},
    failurePolicy: webhook.failurePolicy,
    matchPolicy: 'Exact',
    sideEffects: 'None',
  })
  return [
    // placeholder the webhook writes its serving certificate into
    obj('kpack', 'v1', 'Secret', {name: 'webhook-certs', namespace: NS}),
    obj('kpack', 'v1', 'Service', {name: WEBHOOK_SERVICE, namespace: NS}, {
      spec: {ports: [{name: 'https-webhook', port: 443, targetPort: 8443}], selector: {role: 'webhook'}},
    }),
    controllerDeployment,
    webhookDeployment,
    obj('kpack', 'admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', {name: MUTATING_WEBHOOK}, {webhooks: [webhookEntry(MUTATING_WEBHOOK)]}),
    obj('kpack', 'admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration', {name: VALIDATING_WEBHOOK}, {webhooks: [webhookEntry(VALIDATING_WEBHOOK)]}),
  ]
}
