import {X509Certificate} from 'node:crypto'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Ajv} from 'ajv'
import {describe, expect, it} from 'vitest'
import {parseAllDocuments} from 'yaml'
import {KpiError} from '../src/errors.js'
import fc from 'fast-check'
import {assertCredentialsOnlyInSecrets, holdsDigestRef, imageReferences, walkStrings} from '../src/render/guard.js'
import {renderPlatform} from '../src/render/render.js'
import {bypassesProxy, noProxyList} from '../src/render/trust.js'
import {CONFIG_CHECKSUM_ANNOTATION} from '../src/render/config-checksum.js'
import {makeCA} from '../src/sandbox/pki.js'
import {STAGES, type KubeObject, type RenderedObject} from '../src/render/types.js'
import {toYaml} from '../src/render/yaml.js'
import {CANARY, caFile, lock13, lock17, lockImages, reverseKeys, values} from './fixtures/render/helpers.js'

const find = (objs: RenderedObject[], kind: string, name: string, namespace?: string): KubeObject | undefined =>
  objs.map((o) => o.object).find((o) => o.kind === kind && o.metadata.name === name && o.metadata.namespace === namespace)

const must = (objs: RenderedObject[], kind: string, name: string, namespace?: string): KubeObject => {
  const o = find(objs, kind, name, namespace)
  if (!o) throw new Error(`no ${kind} ${namespace ?? ''}/${name} rendered`)
  return o
}

type Container = {name: string; image: string; env?: Array<{name: string; value?: string; valueFrom?: unknown}>; volumeMounts?: Array<{name: string; mountPath: string}>}
type PodSpec = {containers: Container[]; volumes?: Array<{name: string; configMap?: {name: string}}>; nodeSelector?: Record<string, string>; tolerations?: unknown[]}
/** the warnings about CA certificates and the proxy (the fixture's team shares the platform's account, which is warned of too) */
const aboutTrust = (ws: string[]): string[] => ws.filter((w) => !w.includes('teams[].registry'))
const podSpec = (d: KubeObject): PodSpec => (d as unknown as {spec: {template: {spec: PodSpec}}}).spec.template.spec
const envOf = (d: KubeObject): Map<string, {value?: string; valueFrom?: unknown}> =>
  new Map((podSpec(d).containers[0]!.env ?? []).map((e) => [e.name, e]))

describe('renderPlatform: output model', () => {
  it('labels every object with kpi and its stage, in install order', async () => {
    const {objects} = renderPlatform(await lock17(), await values())
    expect(objects.length).toBeGreaterThan(40)
    let last = 0
    for (const {stage, object} of objects) {
      expect(object.metadata.labels['app.kubernetes.io/managed-by']).toBe('kpi')
      expect(object.metadata.labels['kpi.dev/stage']).toBe(stage)
      if (object.metadata.annotations) expect(Object.keys(object.metadata.annotations).length).toBeGreaterThan(0)
      const i = STAGES.indexOf(stage)
      expect(i).toBeGreaterThanOrEqual(last)
      last = i
    }
    // the first object of each kind of dependency comes before what needs it
    const idx = (kind: string, name: string, ns?: string) => objects.findIndex((o) => o.object.kind === kind && o.object.metadata.name === name && o.object.metadata.namespace === ns)
    expect(idx('Namespace', 'kpack')).toBe(0)
    expect(idx('CustomResourceDefinition', 'clusterstacks.kpack.io')).toBeLessThan(idx('ClusterStack', 'base'))
    expect(idx('ClusterStack', 'base')).toBeLessThan(idx('ClusterBuilder', 'base'))
    expect(idx('Namespace', 'payments')).toBeLessThan(idx('Builder', 'java-only', 'payments'))
  })

  it('renders kpack as its release does: names, service accounts, ConfigMaps, webhooks', async () => {
    const lock = await lock13()
    const {objects} = renderPlatform(lock, await values())
    const controller = must(objects, 'Deployment', 'kpack-controller', 'kpack')
    expect(podSpec(controller).containers[0]!.image).toBe(lock.kpack.images.controller)
    expect((podSpec(controller) as {serviceAccountName?: string}).serviceAccountName).toBe('controller')
    const env = envOf(controller)
    for (const [envName, cm] of [['BUILD_INIT_IMAGE', 'build-init-image'], ['BUILD_WAITER_IMAGE', 'build-waiter-image'], ['REBASE_IMAGE', 'rebase-image'], ['COMPLETION_IMAGE', 'completion-image']] as const) {
      expect(env.get(envName)?.valueFrom).toEqual({configMapKeyRef: {name: cm, key: 'image'}})
      expect(must(objects, 'ConfigMap', cm, 'kpack').data).toHaveProperty('image')
    }
    expect((must(objects, 'ConfigMap', 'build-init-image', 'kpack').data as {image: string}).image).toBe(lock.kpack.images.buildInit)
    const webhook = must(objects, 'Deployment', 'kpack-webhook', 'kpack')
    expect(podSpec(webhook).containers[0]!.image).toBe(lock.kpack.images.webhook)
    const svc = must(objects, 'Service', 'kpack-webhook', 'kpack') as unknown as {spec: {ports: Array<{port: number; targetPort: number}>}}
    expect(svc.spec.ports[0]).toMatchObject({port: 443, targetPort: 8443})
    expect(find(objects, 'Secret', 'webhook-certs', 'kpack')).toBeDefined()
    for (const [kind, name] of [['MutatingWebhookConfiguration', 'defaults.webhook.kpack.io'], ['ValidatingWebhookConfiguration', 'validation.webhook.kpack.io']] as const) {
      const w = must(objects, kind, name) as unknown as {webhooks: Array<Record<string, unknown>>}
      expect(w.webhooks[0]).toMatchObject({name, failurePolicy: 'Fail', sideEffects: 'None', clientConfig: {service: {name: 'kpack-webhook', namespace: 'kpack'}}})
      // as kpack ships them: the webhook fills in rules and caBundle when it runs
      expect(w.webhooks[0]!.rules).toBeUndefined()
    }
    for (const name of ['kpack-controller-admin', 'kpack-webhook-mutatingwebhookconfiguration-admin']) expect(find(objects, 'ClusterRole', name)).toBeDefined()
    expect(find(objects, 'Role', 'kpack-webhook-certs-admin', 'kpack')).toBeDefined()
    for (const kind of ['Image', 'Build', 'Builder', 'ClusterBuilder', 'ClusterStore', 'ClusterStack', 'SourceResolver']) {
      const crd = objects.find((o) => o.object.kind === 'CustomResourceDefinition' && (o.object.spec as {names: {kind: string}}).names.kind === kind)
      expect(crd, kind).toBeDefined()
      const versions = (crd!.object.spec as {versions: Array<{name: string; storage: boolean}>}).versions
      expect(versions.find((v) => v.storage)?.name).toBe('v1alpha2')
    }
  })

  it('takes replicas, resources, nodeSelector, tolerations and failurePolicy from the values', async () => {
    const v = await values()
    v.kpack.webhook.failurePolicy = 'Ignore'
    v.kpack.webhook.replicas = 3
    const {objects} = renderPlatform(await lock13(), v)
    const c = must(objects, 'Deployment', 'kpack-controller', 'kpack') as unknown as {spec: {replicas: number}}
    expect(c.spec.replicas).toBe(2)
    const spec = podSpec(c as unknown as KubeObject)
    expect(spec.nodeSelector).toEqual({'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/platform': 'true'})
    expect(spec.tolerations).toEqual([{key: 'platform', operator: 'Exists', effect: 'NoSchedule'}])
    expect((spec.containers[0] as unknown as {resources: unknown}).resources).toEqual({requests: {cpu: '100m', memory: '512Mi'}, limits: {memory: '1Gi'}})
    expect((must(objects, 'Deployment', 'kpack-webhook', 'kpack') as unknown as {spec: {replicas: number}}).spec.replicas).toBe(3)
    const w = must(objects, 'ValidatingWebhookConfiguration', 'validation.webhook.kpack.io') as unknown as {webhooks: Array<{failurePolicy: string}>}
    expect(w.webhooks[0]!.failurePolicy).toBe('Ignore')
  })

  it('turns kpack\'s feature flags on and sets its scaling factor from the values; by default the controller gets kpack\'s own settings', async () => {
    const flags = (objs: RenderedObject[]) => {
      const env = envOf(must(objs, 'Deployment', 'kpack-controller', 'kpack'))
      const names = ['ENABLE_PRIORITY_CLASSES', 'INJECTED_SIDECAR_SUPPORT', 'EXPERIMENTAL_GENERATE_SLSA_ATTESTATION', 'INSECURE_SSH_TRUST_UNKNOWN_HOSTS', 'GIT_RESOLVER_USE_SHALLOW_CLONE']
      return Object.fromEntries(names.map((n) => [n, env.get(n)?.value]))
    }
    // kpack's release config/controller.yaml: three off, ssh trust on, shallow clone not set
    expect(flags(renderPlatform(await lock17(), await values()).objects)).toEqual({
      ENABLE_PRIORITY_CLASSES: 'false', INJECTED_SIDECAR_SUPPORT: 'false', EXPERIMENTAL_GENERATE_SLSA_ATTESTATION: 'false',
      INSECURE_SSH_TRUST_UNKNOWN_HOSTS: 'true', GIT_RESOLVER_USE_SHALLOW_CLONE: undefined,
    })
    const v = await values()
    v.kpack.features = {injectedSidecarSupport: true, priorityClasses: true, slsaAttestation: true, gitShallowClone: true, sshTrustUnknownHosts: false}
    const on = renderPlatform(await lock17(), v).objects
    expect(flags(on)).toEqual({
      ENABLE_PRIORITY_CLASSES: 'true', INJECTED_SIDECAR_SUPPORT: 'true', EXPERIMENTAL_GENERATE_SLSA_ATTESTATION: 'true',
      INSECURE_SSH_TRUST_UNKNOWN_HOSTS: 'false', GIT_RESOLVER_USE_SHALLOW_CLONE: 'true',
    })
    // kpack's scaling factor: 1, as kpack's release sets it, unless the values say otherwise
    expect(envOf(must(on, 'Deployment', 'kpack-controller', 'kpack')).get('SCALING_FACTOR')?.value).toBe('1')
    v.kpack.controller.scalingFactor = 4
    expect(envOf(must(renderPlatform(await lock17(), v).objects, 'Deployment', 'kpack-controller', 'kpack')).get('SCALING_FACTOR')?.value).toBe('4')
    // the priority classes the flag makes builds name are rendered either way
    for (const name of ['kpack-build-high-priority', 'kpack-build-low-priority']) must(on, 'PriorityClass', name)

    // kpack 0.16 has no shallow-clone resolver: refused, naming the field and the versions, not silently ignored
    const old = await lock17()
    old.kpack.version = '0.16.1'
    let err: unknown
    try {
      renderPlatform(old, v)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).message).toMatch(/^values kpack\.features\.gitShallowClone: kpack 0\.16\.1, which the lock pins, does not read GIT_RESOLVER_USE_SHALLOW_CLONE; kpack 0\.17\.0 and later do/)
    v.kpack.features.gitShallowClone = false
    expect(flags(renderPlatform(old, v).objects)).toMatchObject({INJECTED_SIDECAR_SUPPORT: 'true', GIT_RESOLVER_USE_SHALLOW_CLONE: undefined})
  })

  it('kpack < 0.17 gets the lifecycle-image ConfigMap (before the controller), >= 0.17 the ClusterLifecycle default-lifecycle', async () => {
    const old = await lock13()
    const r13 = renderPlatform(old, await values()).objects
    const cm = must(r13, 'ConfigMap', 'lifecycle-image', 'kpack')
    expect((cm.data as {image: string}).image).toBe(old.lifecycle.image)
    expect(r13.find((o) => o.object === cm)?.stage).toBe('config')
    expect(r13.findIndex((o) => o.object === cm)).toBeLessThan(r13.findIndex((o) => o.object.kind === 'Deployment'))
    expect(r13.some((o) => o.object.kind === 'ClusterLifecycle')).toBe(false)
    expect(find(r13, 'CustomResourceDefinition', 'clusterlifecycles.kpack.io')).toBeUndefined()

    const cur = await lock17()
    const r17 = renderPlatform(cur, await values()).objects
    const cl = must(r17, 'ClusterLifecycle', 'default-lifecycle')
    expect(cl.apiVersion).toBe('kpack.io/v1alpha2')
    expect((cl.spec as {image: string}).image).toBe(cur.lifecycle.image)
    expect(r17.find((o) => o.object === cl)?.stage).toBe('lifecycle')
    expect(find(r17, 'ConfigMap', 'lifecycle-image', 'kpack')).toBeUndefined()
    expect(find(r17, 'CustomResourceDefinition', 'clusterlifecycles.kpack.io')).toBeDefined()
    const rules = (must(r17, 'ClusterRole', 'kpack-controller-admin').rules as Array<{resources: string[]}>)[0]!.resources
    expect(rules).toContain('clusterlifecycles')

    // the boundary: a 0.17 pre-release already has ClusterLifecycle, 0.16 does not
    const rc = await lock13()
    rc.kpack.version = '0.17.0-rc.1'
    expect(find(renderPlatform(rc, await values()).objects, 'ClusterLifecycle', 'default-lifecycle')).toBeDefined()
    rc.kpack.version = '0.16.4'
    expect(find(renderPlatform(rc, await values()).objects, 'ClusterLifecycle', 'default-lifecycle')).toBeUndefined()
  })

  it('renders stacks, stores and builders with tags under the registry and the push service account', async () => {
    const lock = await lock13()
    const {objects} = renderPlatform(lock, await values())
    expect(must(objects, 'ClusterStack', 'base').spec).toEqual({
      id: 'io.buildpacks.stacks.jammy',
      buildImage: {image: lock.stacks[0]!.buildImage},
      runImage: {image: lock.stacks[0]!.runImage},
      serviceAccountRef: {name: 'kp-default-repository-serviceaccount', namespace: 'kpack'},
    })
    expect((must(objects, 'ClusterStore', 'default').spec as {sources: unknown}).sources).toEqual(lock.stores[0]!.sources)
    expect(must(objects, 'ClusterBuilder', 'base').spec).toEqual({
      tag: 'registry.corp.example:5000/platform/kpack/builders/base',
      stack: {kind: 'ClusterStack', name: 'base'},
      store: {kind: 'ClusterStore', name: 'default'},
      order: [{group: [{id: 'paketo-buildpacks/java'}]}, {group: [{id: 'paketo-buildpacks/nodejs', version: '1.2.3', optional: true}]}],
      serviceAccountRef: {name: 'kp-default-repository-serviceaccount', namespace: 'kpack'},
    })
    const sa = must(objects, 'ServiceAccount', 'kp-default-repository-serviceaccount', 'kpack')
    expect(sa.secrets).toEqual([{name: 'kp-default-repository-secret'}])
    expect(sa.imagePullSecrets).toEqual([{name: 'kp-default-repository-secret'}])
    const secret = must(objects, 'Secret', 'kp-default-repository-secret', 'kpack')
    expect(secret.type).toBe('kubernetes.io/dockerconfigjson')
    const cfg = JSON.parse(Buffer.from((secret.data as Record<string, string>)['.dockerconfigjson']!, 'base64').toString()) as {auths: Record<string, {auth: string}>}
    expect(Buffer.from(cfg.auths['registry.corp.example:5000']!.auth, 'base64').toString()).toBe(`robot$kpi:${CANARY}`)
    expect(must(objects, 'ConfigMap', 'kp-config', 'kpack').data).toMatchObject({
      'default.repository': 'registry.corp.example:5000/platform/kpack',
      'default.repository.serviceaccount': 'kp-default-repository-serviceaccount',
      'default.repository.serviceaccount.namespace': 'kpack',
    })
  })

  it("pulls kpack's and cert-injection-webhook's own images from the registry with its credentials", async () => {
    // the kubelet pulls these relocated images from the same registry; without a pull secret a
    // registry that needs credentials leaves the pods in ImagePullBackOff
    const lock = await lock17()
    const {objects} = renderPlatform(lock, await values())
    for (const [name, ns] of [['kpack-controller', 'kpack'], ['kpack-webhook', 'kpack'], ['cert-injection-webhook', 'cert-injection-webhook']] as const) {
      const spec = podSpec(must(objects, 'Deployment', name, ns)) as PodSpec & {imagePullSecrets?: Array<{name: string}>}
      expect(spec.imagePullSecrets, name).toHaveLength(1)
      const secret = must(objects, 'Secret', spec.imagePullSecrets![0]!.name, ns)
      expect(secret.type).toBe('kubernetes.io/dockerconfigjson')
      const cfg = JSON.parse(Buffer.from((secret.data as Record<string, string>)['.dockerconfigjson']!, 'base64').toString()) as {auths: Record<string, {auth: string}>}
      expect(Buffer.from(cfg.auths['registry.corp.example:5000']!.auth, 'base64').toString()).toBe(`robot$kpi:${CANARY}`)
      expect(objects.findIndex((o) => o.object === secret)).toBeLessThan(objects.findIndex((o) => o.object.kind === 'Deployment' && o.object.metadata.name === name))
    }
    // an anonymous registry: no pull secret, and no Secret
    const v = await values()
    v.registry = {server: v.registry.server, repository: v.registry.repository}
    const anonymous = renderPlatform(lock, v).objects
    for (const [name, ns] of [['kpack-controller', 'kpack'], ['kpack-webhook', 'kpack'], ['cert-injection-webhook', 'cert-injection-webhook']] as const) {
      expect((podSpec(must(anonymous, 'Deployment', name, ns)) as {imagePullSecrets?: unknown}).imagePullSecrets).toBeUndefined()
    }
    expect(anonymous.filter((o) => o.object.kind === 'Secret' && o.object.type === 'kubernetes.io/dockerconfigjson')).toEqual([])
  })

  it('gives Builder and ClusterBuilder the shape of kpack\'s types: store optional, group entries by id, image or kind + name', async () => {
    const {objects} = renderPlatform(await lock17(), await values())
    const specSchema = (kind: string) => {
      const crd = objects.find((o) => o.object.kind === 'CustomResourceDefinition' && (o.object.spec as {names: {kind: string}}).names.kind === kind)!
      const v2 = (crd.object.spec as {versions: Array<{name: string; schema: {openAPIV3Schema: {properties: {spec: Record<string, unknown>}}}}>}).versions.find((v) => v.name === 'v1alpha2')!
      return v2.schema.openAPIV3Schema.properties.spec
    }
    const builder = specSchema('Builder') as {required: string[]; properties: Record<string, {required?: string[]; items?: {properties: {group: {items: {properties: Record<string, unknown>}}}}}>}
    const cluster = specSchema('ClusterBuilder') as typeof builder
    // kpack's validation requires the tag and the stack (and a ClusterBuilder's service account), not the store or the order
    expect(builder.required.sort()).toEqual(['stack', 'tag'])
    expect(cluster.required.sort()).toEqual(['serviceAccountRef', 'stack', 'tag'])
    expect(builder.properties.store!.required).toBeUndefined()
    expect(Object.keys(builder.properties.order!.items!.properties.group.items.properties).sort()).toEqual(['apiVersion', 'id', 'image', 'kind', 'name', 'namespace', 'optional', 'version'])

    // the schemas as a validator: the x-kubernetes-* keywords mean nothing to ajv, the rest is plain JSON Schema
    const ajv = new Ajv({strict: false, allErrors: true})
    const check = {Builder: ajv.compile(builder), ClusterBuilder: ajv.compile(cluster)}
    const base = {tag: 'registry.corp.example:5000/b', stack: {kind: 'ClusterStack', name: 'base'}}
    const clusterBase = {...base, serviceAccountRef: {name: 'sa', namespace: 'kpack'}}
    const accepted: Array<[keyof typeof check, unknown]> = [
      ['Builder', {...base, order: [{group: [{image: 'registry.corp.example:5000/bp@sha256:' + 'a'.repeat(64)}]}]}],
      ['Builder', {...base, order: [{group: [{kind: 'ClusterBuildpack', name: 'x'}]}]}],
      ['Builder', {...base, order: [{group: [{id: 'paketo-buildpacks/java', version: '1.0.0', optional: true}]}]}],
      ['Builder', {...base, store: {name: 'default'}, order: [{group: [{kind: 'Buildpack', name: 'x', id: 'x/y'}]}]}],
      ['Builder', {...base}],
      ['ClusterBuilder', {...clusterBase, order: [{group: [{kind: 'ClusterBuildpack', name: 'x'}]}]}],
      ['ClusterBuilder', {...clusterBase, store: {kind: 'ClusterStore', name: 'default'}, order: [{group: [{id: 'x'}]}]}],
      // a store's kind without a name is kpack's "no store": its webhook defaults a Builder's to this
      ['Builder', {...base, store: {kind: 'ClusterStore'}}],
      ['ClusterBuilder', {...clusterBase, store: {kind: 'ClusterStore'}}],
      ['ClusterBuilder', {...clusterBase, additionalLabels: {'team.example/owner': 'payments'}}],
    ]
    for (const [kind, spec] of accepted) expect(check[kind](spec), `${kind} ${JSON.stringify(spec)}: ${ajv.errorsText(check[kind].errors)}`).toBe(true)
    const rejected: Array<[keyof typeof check, unknown]> = [
      ['Builder', {stack: base.stack, order: []}],
      ['Builder', {tag: base.tag}],
      ['Builder', {...base, order: [{group: [{version: '1.0.0'}]}]}],
      ['Builder', {...base, order: [{group: [{name: 'x'}]}]}],
      ['Builder', {...base, order: [{group: [{kind: 'ClusterBuildpack'}]}]}],
      ['Builder', {...base, order: [{group: [{kind: 'ClusterStore', name: 'x'}]}]}],
      ['ClusterBuilder', {...clusterBase, store: {name: 'default'}}],
      ['ClusterBuilder', {...base}],
    ]
    for (const [kind, spec] of rejected) expect(check[kind](spec), `${kind} ${JSON.stringify(spec)}`).toBe(false)
  })

  it('gives each team a namespace, a service account with the registry secret, RBAC and its builders', async () => {
    const lock = await lock13()
    lock.builders.push({name: 'web-special', stack: 'base', store: 'default', namespace: 'team-web', order: [{group: [{id: 'paketo-buildpacks/nodejs'}]}]})
    const {objects} = renderPlatform(lock, await values())
    for (const ns of ['payments', 'team-web']) {
      expect(find(objects, 'Namespace', ns)).toBeDefined()
      const sa = must(objects, 'ServiceAccount', 'kpi-builds', ns)
      expect(sa.secrets).toEqual([{name: 'kpi-registry-credentials'}])
      expect(sa.imagePullSecrets).toEqual([{name: 'kpi-registry-credentials'}])
      expect(must(objects, 'Secret', 'kpi-registry-credentials', ns).type).toBe('kubernetes.io/dockerconfigjson')
      expect(must(objects, 'RoleBinding', 'kpi-team-builds', ns).roleRef).toMatchObject({kind: 'ClusterRole', name: 'kpi-team-builds'})
    }
    const crb = must(objects, 'ClusterRoleBinding', 'kpi-team-cluster-builders-payments')
    expect(crb.subjects).toContainEqual({kind: 'Group', name: 'payments-devs', apiGroup: 'rbac.authorization.k8s.io'})
    // the build service account is bound to nothing: build pods run code from the app's repository with its token
    for (const ns of ['payments', 'team-web']) {
      for (const [kind, name] of [['RoleBinding', 'kpi-team-builds'], ['ClusterRoleBinding', `kpi-team-cluster-builders-${ns === 'payments' ? 'payments' : 'web'}`]] as const) {
        const b = must(objects, kind, name, kind === 'RoleBinding' ? ns : undefined)
        expect((b.subjects as Array<{name: string}> | undefined ?? []).map((x) => x.name), `${kind} ${name}`).not.toContain('kpi-builds')
      }
    }
    const read = (must(objects, 'ClusterRole', 'kpi-team-cluster-builders').rules as Array<{resources: string[]; verbs: string[]}>)[0]!
    expect(read.resources).toEqual(expect.arrayContaining(['clusterbuilders', 'clusterstacks', 'clusterstores']))
    expect(read.verbs).toEqual(['get', 'list', 'watch'])
    const manage = (must(objects, 'ClusterRole', 'kpi-team-builds').rules as Array<{resources: string[]}>)[0]!
    expect(manage.resources).toEqual(expect.arrayContaining(['images', 'builds', 'builders', 'sourceresolvers']))
    expect(must(objects, 'Builder', 'java-only', 'payments').spec).toMatchObject({
      tag: 'registry.corp.example:5000/platform/kpack/builders/payments/java-only',
      serviceAccountName: 'kpi-builds',
      stack: {kind: 'ClusterStack', name: 'base'},
    })
    // a lock builder with a namespace becomes that team's Builder, not a ClusterBuilder
    expect(find(objects, 'Builder', 'web-special', 'team-web')).toBeDefined()
    expect(find(objects, 'ClusterBuilder', 'web-special')).toBeUndefined()
  })

  it('refuses builders naming a stack, store or namespace the lock and values do not have', async () => {
    const lock = await lock13()
    lock.builders.push({name: 'lost', stack: 'nope', store: 'default', namespace: 'nowhere', order: [{group: [{id: 'x'}]}]})
    try {
      renderPlatform(lock, await values())
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(KpiError)
      expect((e as KpiError).kind).toBe('input')
      expect((e as KpiError).message).toMatch(/stack "nope" is not a stack of the lock/)
      expect((e as KpiError).message).toMatch(/namespace "nowhere" is not the namespace of a team/)
    }
  })
})

describe('renderPlatform: determinism', () => {
  it('gives byte-identical YAML across runs and whatever the key order of the inputs', async () => {
    const a = toYaml(renderPlatform(await lock17(), await values()).objects)
    const b = toYaml(renderPlatform(await lock17(), await values()).objects)
    expect(b).toBe(a)
    const c = toYaml(renderPlatform(reverseKeys(await lock17()), reverseKeys(await values())).objects)
    expect(c).toBe(a)
    // and of the order of stacks/stores/builders/teams, which carry no meaning
    const lock = await lock17()
    lock.stacks.push({...lock.stacks[0]!, name: 'aaa-first'})
    const lockRev = structuredClone(lock)
    lockRev.stacks.reverse()
    const v = await values()
    const vRev = structuredClone(v)
    vRev.teams.reverse()
    expect(toYaml(renderPlatform(lockRev, vRev).objects)).toBe(toYaml(renderPlatform(lock, v).objects))
    // the YAML round-trips to the same objects, one document each
    const docs = parseAllDocuments(a)
    expect(Array.isArray(docs) ? docs.length : 0).toBe(renderPlatform(await lock17(), await values()).objects.length)
  })
})

describe('renderPlatform: air gap', () => {
  it('writes only digest references from the lock, wherever a string holds one', async () => {
    for (const lock of [await lock13(), await lock17()]) {
      const {objects} = renderPlatform(lock, await values())
      const allowed = new Set(lockImages(lock))
      const found = imageReferences(objects)
      expect(found.length).toBeGreaterThan(10)
      for (const f of found) expect(allowed, `${f.ref} at ${f.object}: ${f.path}`).toContain(f.ref)
      // and every image of the lock is used somewhere
      expect(new Set(found.map((f) => f.ref))).toEqual(allowed)
      // independently of the walker: any string holding a digest anywhere is one of the lock's
      for (const {object} of objects) {
        walkStrings(object, (s, path) => {
          if (/sha256:[a-f0-9]{64}/.test(s)) expect(allowed, `${object.kind} ${object.metadata.name}: ${path}`).toContain(s)
        })
      }
    }
  })

  it('tells a string holding a digest reference as the regex it replaces does, in one pass over a long one', async () => {
    const regex = /[a-z0-9][^\s@]*@sha(256|512):/i
    for (const s of ['a@sha256:', 'A/b:c@SHA512:x', '@sha256:', ' -@sha256:', 'x @sha256:', 'x y@sha256:', 'x@@sha256:', 'ab@sha25:', 'é@sha256:', 'x\u00a0@sha256:', 'a@b@sha512:', '']) {
      expect(holdsDigestRef(s), JSON.stringify(s)).toBe(regex.test(s))
    }
    const alphabet = fc.constantFrom('a', 'Z', '7', '-', ' ', '\t', '@', 's', 'S', 'h', 'a', '2', '5', '6', '1', ':', 'é')
    fc.assert(fc.property(fc.array(alphabet, {maxLength: 40}).map((cs) => cs.join('')), (s) => holdsDigestRef(s) === regex.test(s)), {numRuns: 5000})
    // the regex, tried at every start, took 18 s over a 100 kB node selector value a fuzzed values
    // file held (quadratic); a 4 MB one here would have taken hours, past the test's timeout
    const v = await values()
    v.kpack.controller.nodeSelector = {'node-role.kubernetes.io/platform': 'x'.repeat(4 << 20)}
    const {objects} = renderPlatform(await lock17(), v)
    expect(podSpec(must(objects, 'Deployment', 'kpack-controller', 'kpack')).nodeSelector?.['node-role.kubernetes.io/platform']).toHaveLength(4 << 20)
  })

  it('refuses a lock with a reference outside the registry, naming it and where it goes', async () => {
    const lock = await lock13()
    const outside = 'docker.io/paketobuildpacks/run-jammy-base@sha256:' + 'a'.repeat(64)
    lock.stacks[0]!.runImage = outside
    try {
      renderPlatform(lock, await values())
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(KpiError)
      expect((e as KpiError).kind).toBe('input')
      const m = (e as KpiError).message
      expect(m).toContain(outside)
      expect(m).toContain('ClusterStack base: spec.runImage.image')
      expect(m).toContain('not under registry.corp.example:5000/platform/kpack')
      expect(m.split('\n')).toHaveLength(2)
    }
  })

  it('refuses tag references and names every offender, including helper images in ConfigMaps', async () => {
    const lock = await lock13()
    lock.kpack.images.rebase = 'registry.corp.example:5000/platform/kpack/kpack/rebase:0.13.2'
    lock.lifecycle.image = 'registry.corp.example:5000/elsewhere/lifecycle@sha256:' + 'b'.repeat(64)
    try {
      renderPlatform(lock, await values())
      expect.unreachable()
    } catch (e) {
      const m = (e as KpiError).message
      expect(m).toMatch(/^2 image references are not/)
      expect(m).toContain('kpack/rebase:0.13.2 (not pinned by digest) at ConfigMap kpack/rebase-image: data.image')
      expect(m).toContain('elsewhere/lifecycle@sha256:')
      expect(m).toContain('ConfigMap kpack/lifecycle-image: data.image')
    }
  })
})

describe('renderPlatform: credentials', () => {
  const TEAM_CANARY = 'team-canary-S3cret-91ab'
  const dockerAuth = (o: KubeObject) => JSON.parse(Buffer.from((o.data as Record<string, string>)['.dockerconfigjson']!, 'base64').toString()) as {auths: Record<string, {username: string; password: string}>}

  it("gives a team with an account of its own that account, not the platform's, and pushes its Builders under its repository; teams sharing the platform's are warned of", async () => {
    const v = await values()
    v.teams[0]!.registry = {repository: 'teams/payments', username: 'payments-robot', password: TEAM_CANARY}
    const {objects, warnings} = renderPlatform(await lock13(), v)
    const own = dockerAuth(must(objects, 'Secret', 'kpi-registry-credentials', 'payments'))
    expect(own.auths).toEqual({'registry.corp.example:5000': expect.objectContaining({username: 'payments-robot', password: TEAM_CANARY})})
    expect(JSON.stringify(own)).not.toContain(CANARY)
    // the other team and the platform keep the platform's
    expect(dockerAuth(must(objects, 'Secret', 'kpi-registry-credentials', 'team-web')).auths['registry.corp.example:5000']!.password).toBe(CANARY)
    expect(dockerAuth(must(objects, 'Secret', 'kp-default-repository-secret', 'kpack')).auths['registry.corp.example:5000']!.password).toBe(CANARY)
    expect(must(objects, 'Builder', 'java-only', 'payments').spec).toMatchObject({tag: 'registry.corp.example:5000/teams/payments/builders/java-only'})
    // the team's password in its Secret's data only
    for (const {object} of objects) {
      walkStrings(object, (str, path) => {
        if (object.kind === 'Secret' && /^data\./.test(path)) return
        expect(str.includes(TEAM_CANARY) || str.includes(Buffer.from(TEAM_CANARY).toString('base64')), `${object.kind} ${object.metadata.name}: ${path}`).toBe(false)
      })
    }
    const shared = warnings.filter((w) => w.includes('teams[].registry'))
    expect(shared).toHaveLength(1)
    expect(shared[0]).toMatch(/^team web gets the platform's registry account, which can push the platform's own images/)
    expect(shared[0]).not.toContain('payments')

    // every team with its own: nothing to warn of; no platform account: nothing shared
    v.teams[1]!.registry = {dockerConfigJson: JSON.stringify({auths: {'registry.corp.example:5000': {auth: Buffer.from(`web-robot:${TEAM_CANARY}x`).toString('base64')}}})}
    const both = renderPlatform(await lock13(), v)
    expect(both.warnings.filter((w) => w.includes('teams[].registry'))).toEqual([])
    expect(dockerAuth(must(both.objects, 'Secret', 'kpi-registry-credentials', 'team-web')).auths['registry.corp.example:5000']).toEqual({auth: Buffer.from(`web-robot:${TEAM_CANARY}x`).toString('base64')})
    // no repository of its own: its Builders stay under the platform's, by namespace
    expect(find(both.objects, 'Builder', 'java-only', 'payments')).toBeDefined()
    const anon = await values()
    delete anon.registry.username
    delete anon.registry.password
    expect(renderPlatform(await lock13(), anon).warnings.filter((w) => w.includes('teams[].registry'))).toEqual([])
  })

  it("a team's repository without an account of its own moves its Builders and keeps the platform's account (and the warning)", async () => {
    const v = await values()
    v.teams[0]!.registry = {repository: 'teams/payments'}
    const {objects, warnings} = renderPlatform(await lock13(), v)
    expect(must(objects, 'Builder', 'java-only', 'payments').spec).toMatchObject({tag: 'registry.corp.example:5000/teams/payments/builders/java-only'})
    expect(dockerAuth(must(objects, 'Secret', 'kpi-registry-credentials', 'payments')).auths['registry.corp.example:5000']!.password).toBe(CANARY)
    expect(warnings.find((w) => w.includes('teams[].registry'))).toMatch(/^teams payments, web get the platform's registry account/)
  })

  it("refuses builders that would be pushed to one tag: a team's repository that is the platform's, or another team's", async () => {
    const lock = await lock13()
    const clusterBuilder = lock.builders.find((b) => !b.namespace)!.name
    const v = await values()
    v.teams[0]!.registry = {repository: 'platform/kpack'}
    v.teams[0]!.builders[0]!.name = clusterBuilder
    expect(() => renderPlatform(lock, v)).toThrow(`ClusterBuilder ${clusterBuilder} and Builder payments/${clusterBuilder} (teams[0].registry.repository platform/kpack) would both be pushed to registry.corp.example:5000/platform/kpack/builders/${clusterBuilder}`)
    const w = await values()
    w.teams[0]!.registry = {repository: 'teams/shared'}
    w.teams[1]!.registry = {repository: 'teams/shared'}
    w.teams[1]!.builders = [{...w.teams[0]!.builders[0]!}]
    let e: unknown
    try {
      renderPlatform(lock, w)
    } catch (err) {
      e = err
    }
    expect((e as KpiError).kind).toBe('input')
    expect((e as KpiError).message).toContain('Builder payments/java-only (teams[0].registry.repository teams/shared) and Builder team-web/java-only (teams[1].registry.repository teams/shared) would both be pushed to registry.corp.example:5000/teams/shared/builders/java-only')
    expect((e as KpiError).hint).toMatch(/a repository of its own/)
    // apart, they render
    w.teams[1]!.registry = {repository: 'teams/web'}
    expect(() => renderPlatform(lock, w)).not.toThrow()
  })

  it("the guard refuses a team's credential outside a Secret too", async () => {
    const v = await values()
    v.teams[0]!.registry = {username: 'payments-robot', password: TEAM_CANARY}
    const {objects} = renderPlatform(await lock13(), v)
    const leak = {stage: 'teams' as const, object: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'oops', namespace: 'payments', labels: {}}, data: {token: TEAM_CANARY}}}
    expect(() => assertCredentialsOnlyInSecrets([...objects, leak], [v.registry, v.teams[0]!.registry!])).toThrow("a registry credential would be written outside a Secret's data, at ConfigMap payments/oops: data.token")
    expect(() => assertCredentialsOnlyInSecrets(objects, [v.registry, v.teams[0]!.registry!])).not.toThrow()
  })

  it('puts the registry password only in Secret data', async () => {
    const {objects} = renderPlatform(await lock17(), await values())
    const needles = [CANARY, Buffer.from(CANARY).toString('base64'), Buffer.from(`robot$kpi:${CANARY}`).toString('base64')]
    let secretsWithIt = 0
    for (const {object} of objects) {
      walkStrings(object, (s, path) => {
        const inSecretData = object.kind === 'Secret' && /^(data|stringData)\./.test(path)
        if (inSecretData) {
          if (Buffer.from(s, 'base64').toString().includes(CANARY)) secretsWithIt++
          return
        }
        for (const n of needles) expect(s.includes(n), `${object.kind} ${object.metadata.name}: ${path}`).toBe(false)
      })
    }
    // kpack's and cert-injection-webhook's namespaces, and both team namespaces
    expect(secretsWithIt).toBe(4)
    const yaml = toYaml(objects)
    expect(yaml).not.toContain(CANARY)
  })

  it('a short password that is also part of what kpi renders anyway is no leak: it renders, in the Secrets only', async () => {
    // `admin` is in ClusterRole kpack-controller-admin, `linux` in every nodeSelector, `corp` in every
    // image reference, `secret` in the name of the Secret that holds it (rendered only with credentials)
    for (const password of ['admin', 'linux', 'corp', 'secret']) {
      const v = await values()
      v.registry = {...v.registry, password}
      const {objects} = renderPlatform(await lock17(), v)
      const secret = must(objects, 'Secret', 'kp-default-repository-secret', 'kpack')
      const cfg = JSON.parse(Buffer.from((secret.data as Record<string, string>)['.dockerconfigjson']!, 'base64').toString()) as {auths: Record<string, {password: string}>}
      expect(cfg.auths['registry.corp.example:5000']!.password).toBe(password)
    }
  })

  it('the guard still refuses a credential kpi itself put outside a Secret, without naming it', async () => {
    const v = await values()
    const {objects} = renderPlatform(await lock17(), v)
    const leak = {stage: 'config' as const, object: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'oops', namespace: 'kpack', labels: {}}, data: {auth: `admin:${CANARY}`}}}
    const renderedAnyway = () => new Set(['kpack-controller-admin'])
    let e: unknown
    try {
      assertCredentialsOnlyInSecrets([...objects, leak], v.registry, renderedAnyway)
    } catch (err) {
      e = err
    }
    expect(e).toBeInstanceOf(KpiError)
    expect((e as KpiError).kind).toBe('internal')
    expect((e as KpiError).message).toBe("a registry credential would be written outside a Secret's data, at ConfigMap kpack/oops: data.auth")
  })

  it('writes a docker config given in the values as the Secret, and only there', async () => {
    const v = await values()
    const auth = Buffer.from('robot:dc-s3cret-42').toString('base64')
    v.registry = {server: v.registry.server, repository: v.registry.repository, dockerConfigJson: JSON.stringify({auths: {[v.registry.server]: {auth}}})}
    const {objects} = renderPlatform(await lock13(), v)
    for (const {object} of objects) {
      walkStrings(object, (s, path) => {
        if (object.kind === 'Secret' && path.startsWith('data.')) return
        expect(s.includes('dc-s3cret-42') || s.includes(auth), `${object.kind} ${object.metadata.name}: ${path}`).toBe(false)
      })
    }
    const secret = must(objects, 'Secret', 'kp-default-repository-secret', 'kpack')
    expect(Buffer.from((secret.data as Record<string, string>)['.dockerconfigjson']!, 'base64').toString()).toBe(v.registry.dockerConfigJson)
  })

  it('keeps a proxy password in a Secret and refers to it from the env', async () => {
    const v = await values()
    v.proxy = {httpProxy: 'http://user:proxy-s3cret-99@proxy.corp.example:3128', noProxy: []}
    const {objects} = renderPlatform(await lock17(), v)
    for (const {object} of objects) {
      walkStrings(object, (s, path) => {
        if (object.kind === 'Secret' && path.startsWith('data.')) return
        expect(s, `${object.kind} ${object.metadata.name}: ${path}`).not.toContain('proxy-s3cret-99')
      })
    }
    const env = envOf(must(objects, 'Deployment', 'kpack-controller', 'kpack'))
    expect(env.get('HTTP_PROXY')?.valueFrom).toEqual({secretKeyRef: {name: 'kpi-proxy', key: 'HTTP_PROXY'}})
    const secret = must(objects, 'Secret', 'kpi-proxy', 'kpack')
    expect(Buffer.from((secret.data as Record<string, string>).HTTP_PROXY!, 'base64').toString()).toBe('http://user:proxy-s3cret-99@proxy.corp.example:3128')
  })
})

describe('renderPlatform: CA certificates and proxy', () => {
  it('brings the CA and the proxy to the kpack controller, keeping the system CAs and cluster traffic direct', async () => {
    const {objects} = renderPlatform(await lock13(), await values())
    const controller = must(objects, 'Deployment', 'kpack-controller', 'kpack')
    const env = envOf(controller)
    expect(env.get('HTTP_PROXY')?.value).toBe('http://proxy.corp.example:3128')
    expect(env.get('https_proxy')?.value).toBe('http://proxy.corp.example:3128')
    const noProxy = env.get('NO_PROXY')!.value!.split(',')
    expect(env.get('no_proxy')?.value).toBe(env.get('NO_PROXY')?.value)
    for (const e of ['.corp.example', '10.0.0.0/8', '.svc', '.cluster.local', 'kubernetes.default', '10.96.0.0/12', '127.0.0.1', 'localhost']) expect(noProxy).toContain(e)
    expect(new Set(noProxy).size).toBe(noProxy.length)
    // CA: its own directory added to Go's default directories; SSL_CERT_FILE left alone
    const dirs = env.get('SSL_CERT_DIR')!.value!.split(':')
    expect(dirs).toContain('/etc/ssl/certs')
    expect(env.has('SSL_CERT_FILE')).toBe(false)
    const spec = podSpec(controller)
    const mount = spec.containers[0]!.volumeMounts!.find((m) => dirs.includes(m.mountPath))!
    expect(mount.mountPath).not.toBe('/etc/ssl/certs')
    const vol = spec.volumes!.find((x) => x.name === mount.name)!
    const cm = must(objects, 'ConfigMap', vol.configMap!.name, 'kpack')
    const pem = Object.values(cm.data as Record<string, string>)[0]!
    const want = new X509Certificate(await readFile(caFile))
    expect(new X509Certificate(pem).fingerprint256).toBe(want.fingerprint256)
  })

  it('warns when the proxy would carry the traffic to the registry (not in proxy.noProxy by Go\'s rules), and only then', async () => {
    const lock = await lock17()
    const v = await values()
    const warned = (noProxy: string[]) => renderPlatform(lock, {...v, proxy: {...v.proxy!, noProxy}}).warnings.filter((w) => w.includes('proxy.noProxy'))
    expect(v.registry.server).toBe('registry.corp.example:5000')
    expect(warned(['.corp.example'])).toEqual([])
    expect(warned(['corp.example']), 'a name matches the domains below it').toEqual([])
    expect(warned(['registry.corp.example:5000'])).toEqual([])
    expect(warned(['*'])).toEqual([])
    expect(warned(['registry.corp.example:443']), 'another port').toHaveLength(1)
    expect(warned(['.registry.corp.example']), 'a leading dot: only the domains below').toHaveLength(1)
    expect(warned(['example.org'])).toEqual([
      'the registry registry.corp.example:5000 is not in proxy.noProxy: the kpack controller and build pods reach it through the proxy; add it (or a domain above it) to proxy.noProxy unless the proxy is how the cluster reaches it',
    ])
    // registries named by address, against the list render gives the controller (the service CIDR 10.96.0.0/12 in it)
    const list = (noProxy: string[]) => noProxyList({...v, proxy: {...v.proxy!, noProxy}})
    expect(bypassesProxy('10.20.30.40:5000', list(['10.0.0.0/8'])), 'an address in a CIDR').toBe(true)
    expect(bypassesProxy('10.96.0.9', list([])), 'an address in the service CIDR').toBe(true)
    expect(bypassesProxy('192.168.1.5', list(['10.0.0.0/8']))).toBe(false)
    expect(bypassesProxy('[fd00::5]:5000', list(['fd00::/8']))).toBe(true)
    expect(bypassesProxy('registry.kpack.svc:5000', list([])), 'a Service of the cluster').toBe(true)
    // as golang.org/x/net/http/httpproxy: the default port, *.name, bare IPv6, loopback, names never match addresses
    expect(bypassesProxy('harbor.corp.example', ['harbor.corp.example:443'])).toBe(true)
    expect(bypassesProxy('harbor.corp.example', ['harbor.corp.example:80'])).toBe(false)
    expect(bypassesProxy('harbor.corp.example', ['*.corp.example'])).toBe(true)
    expect(bypassesProxy('corp.example', ['*.corp.example'])).toBe(false)
    expect(bypassesProxy('[fd00::5]:5000', ['fd00::5'])).toBe(true)
    expect(bypassesProxy('[fd00:0:0::5]', ['[fd00::5]:443'])).toBe(true)
    expect(bypassesProxy('127.0.0.1:5000', [])).toBe(true)
    expect(bypassesProxy('localhost:5000', [])).toBe(true)
    expect(bypassesProxy('10.1.2.3', ['3'])).toBe(false)
    // an https registry goes through HTTPS_PROXY only: with HTTP_PROXY alone there is nothing to warn of
    expect(renderPlatform(lock, {...v, proxy: {httpProxy: v.proxy!.httpProxy, noProxy: ['example.org']}}).warnings.filter((w) => w.includes('proxy.noProxy'))).toEqual([])
    expect(renderPlatform(lock, {...v, proxy: undefined}).warnings.filter((w) => w.includes('proxy.noProxy')), 'no proxy').toEqual([])
  })

  it('warns that build pods will not get the CA or proxy when the bundle has no cert-injection-webhook', async () => {
    const warnings = aboutTrust(renderPlatform(await lock13(), await values()).warnings)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/no certInjection images/)
    expect(warnings[0]).toMatch(/build pods will not trust the CA or use the proxy/)
    const v = await values()
    v.caCerts = []
    delete v.proxy
    expect(aboutTrust(renderPlatform(await lock13(), v).warnings)).toEqual([])
    v.caCerts = [await readFile(caFile, 'utf8')]
    expect(aboutTrust(renderPlatform(await lock13(), v).warnings)[0]).toMatch(/build pods will not trust the CA;/)
  })

  it('renders cert-injection-webhook\'s own configuration when the bundle names its images', async () => {
    const lock = await lock17()
    const {objects, warnings} = renderPlatform(lock, await values())
    expect(aboutTrust(warnings)).toEqual([])
    const ns = 'cert-injection-webhook'
    expect(find(objects, 'Namespace', ns)).toBeDefined()
    const d = must(objects, 'Deployment', 'cert-injection-webhook', ns)
    const c = podSpec(d).containers[0]!
    expect(c.image).toBe(lock.certInjection!.webhook)
    expect((c as unknown as {args: string[]}).args).toEqual(['-label=kpack.io/build'])
    expect(envOf(d).get('SETUP_CA_CERTS_IMAGE')?.valueFrom).toEqual({configMapKeyRef: {name: 'setup-ca-certs-image', key: 'image'}})
    expect(must(objects, 'ConfigMap', 'setup-ca-certs-image', ns).data).toEqual({image: lock.certInjection!.setupCaCerts})
    // its own encoding: the base64 of the PEM bundle
    const ca = Buffer.from((must(objects, 'ConfigMap', 'ca-cert', ns).data as Record<string, string>)['ca.crt']!, 'base64').toString('utf8')
    expect(new X509Certificate(ca).fingerprint256).toBe(new X509Certificate(await readFile(caFile)).fingerprint256)
    expect(must(objects, 'ConfigMap', 'https-proxy', ns).data).toEqual({value: 'http://proxy.corp.example:3128'})
    expect((must(objects, 'ConfigMap', 'no-proxy', ns).data as Record<string, string>).value).toContain('.svc')
    const w = must(objects, 'MutatingWebhookConfiguration', 'defaults.webhook.cert-injection.tanzu.vmware.com') as unknown as {webhooks: Array<Record<string, unknown>>}
    expect(w.webhooks[0]).toMatchObject({
      objectSelector: {matchExpressions: [{key: 'kpack.io/build', operator: 'Exists'}]},
      rules: [{apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['pods']}],
      clientConfig: {service: {name: 'cert-injection-webhook', namespace: ns, path: '/certinjectionwebhook', port: 443}},
      failurePolicy: 'Ignore',
    })
    expect(find(objects, 'Service', 'cert-injection-webhook', ns)).toBeDefined()
    expect(find(objects, 'ClusterRole', 'cert-injection-webhook-cluster-role')).toBeDefined()
    expect(objects.some((o) => JSON.stringify(o.object).includes('kpi-injector'))).toBe(false)
  })
  it('a change to a ConfigMap a Deployment reads at start (the CA, a helper image) rolls that Deployment, and only that one', async () => {
    const sums = (objs: RenderedObject[]) => Object.fromEntries(objs.filter((o) => o.object.kind === 'Deployment').map((o) => [
      o.object.metadata.name,
      (o.object as unknown as {spec: {template: {metadata?: {annotations?: Record<string, string>}}}}).spec.template.metadata?.annotations?.[CONFIG_CHECKSUM_ANNOTATION],
    ]))
    const lock = await lock17()
    const base = sums(renderPlatform(lock, await values()).objects)
    // the controller takes its helper images and the CA from ConfigMaps; cert-injection-webhook its CA and proxy
    expect(base['kpack-controller']).toMatch(/^[0-9a-f]{64}$/)
    expect(base['cert-injection-webhook']).toMatch(/^[0-9a-f]{64}$/)
    expect(sums(renderPlatform(await lock17(), await values()).objects)).toEqual(base)

    const caDir = await mkdtemp(join(tmpdir(), 'kpi-render-ca-'))
    const other = await makeCA(join(caDir, 'ca'), 'another CA').finally(() => rm(caDir, {recursive: true, force: true}))
    const v = await values()
    v.caCerts = [other.certPem]
    const newCa = sums(renderPlatform(lock, v).objects)
    expect(newCa['kpack-controller']).not.toBe(base['kpack-controller'])
    expect(newCa['cert-injection-webhook']).not.toBe(base['cert-injection-webhook'])
    expect(newCa['kpack-webhook']).toBe(base['kpack-webhook'])

    const patched = await lock17()
    patched.kpack.images.buildInit = patched.kpack.images.buildInit.replace(/@sha256:.*/, '@sha256:' + 'c'.repeat(64))
    const newHelper = sums(renderPlatform(patched, await values()).objects)
    expect(newHelper['kpack-controller']).not.toBe(base['kpack-controller'])
    expect(newHelper['cert-injection-webhook']).toBe(base['cert-injection-webhook'])

    const fewer = await values()
    fewer.teams = fewer.teams.slice(1)
    expect(sums(renderPlatform(lock, fewer).objects)).toEqual(base)
  })
  it('kpack\'s webhook may update exactly the CRDs it converts, as kpack\'s own role has it', async () => {
    for (const lock of [await lock13(), await lock17()]) {
      const {objects} = renderPlatform(lock, await values())
      const role = must(objects, 'ClusterRole', 'kpack-webhook-mutatingwebhookconfiguration-admin') as unknown as {rules: Array<{apiGroups: string[]; resources: string[]; resourceNames?: string[]; verbs: string[]}>}
      const updates = role.rules.filter((r) => r.resources.includes('customresourcedefinitions') && r.verbs.includes('update'))
      expect(updates).toHaveLength(1)
      expect([...updates[0]!.resourceNames!].sort()).toEqual(['builders.kpack.io', 'builds.kpack.io', 'images.kpack.io', 'sourceresolvers.kpack.io'])
    }
  })
})
