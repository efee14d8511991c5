/**
 * What kpi renders, held against kpack's own release configuration (config/*.yaml of each kpack
 * version tools/versions.env pins, which scripts/tools.sh keeps beside kpack's binaries). kpi writes
 * its own objects (structural schemas, values, trust), so they are not compared byte for byte; what
 * kpack's binaries depend on is: the CRDs' names, versions and conversion (kpack's webhook converts
 * exactly the kinds its CRDs send it), every permission kpack's roles grant, the bindings, the
 * webhook configurations kpack's webhook reconciles by name, the Deployments' env and the
 * namespace's labels. Each difference found by hand in an earlier review would fail here.
 */
import {existsSync} from 'node:fs'
import {readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {parseAllDocuments} from 'yaml'
import {renderPlatform} from '../src/render/render.js'
import type {KubeObject} from '../src/render/types.js'
import {kpiCacheDir} from '../src/cache-dir.js'
import {kpackVersions} from '../src/sandbox/tools.js'
import {lock17, values} from './fixtures/render/helpers.js'

// kpack's YAML as parsed: any shape, read field by field
type Obj = KubeObject & Record<string, any>
interface Rule {apiGroups?: string[]; resources?: string[]; resourceNames?: string[]; verbs: string[]; nonResourceURLs?: string[]}

async function kpackRelease(version: string): Promise<Obj[]> {
  const dir = join(kpiCacheDir(), `kpack-${version}`, 'config')
  if (!existsSync(join(dir, 'controller.yaml'))) throw new Error(`no kpack ${version} release config in ${dir}: run bash scripts/tools.sh platform`)
  const out: Obj[] = []
  for (const f of (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort()) {
    // ytt annotations are comments: each file parses as plain YAML
    for (const doc of parseAllDocuments(await readFile(join(dir, f), 'utf8'))) {
      const o = doc.toJS() as Obj | null
      if (o?.kind && o.metadata?.name) out.push(o)
    }
  }
  return out
}

async function kpiRender(version: string): Promise<Obj[]> {
  const lock = await lock17()
  lock.kpack.version = version.replace(/^v/, '')
  return renderPlatform(lock, await values()).objects.map((o) => o.object as Obj)
}

const id = (o: Obj) => `${o.kind} ${o.metadata.namespace ? o.metadata.namespace + '/' : ''}${o.metadata.name}`
/** The objects of those kinds; none at all fails, so that a loop over them cannot pass empty. */
const byKind = (objs: Obj[], ...kinds: string[]) => {
  const found = objs.filter((o) => kinds.includes(o.kind))
  expect(found.length, `no ${kinds.join(' or ')} among ${objs.length} objects`).toBeGreaterThan(0)
  return found
}
const find = (objs: Obj[], like: Obj) => objs.find((o) => id(o) === id(like))

/** Every (apiGroup, resource, verb) a rule grants, one string each; `*` stays as it is. */
const grants = (rules: Rule[]): string[] => rules.flatMap((r) => r.nonResourceURLs
  ? r.nonResourceURLs.flatMap((u) => r.verbs.map((v) => `url ${u} ${v}`))
  : (r.apiGroups ?? ['']).flatMap((g) => (r.resources ?? []).flatMap((res) => r.verbs.map((v) => `${g} ${res} ${v}${r.resourceNames ? ' ' + [...r.resourceNames].sort().join(',') : ''}`))))

function granted(have: Set<string>, want: string): boolean {
  if (have.has(want)) return true
  const [g, res, v, names] = want.split(' ')
  return [`${g} ${res} *`, `${g} * ${v}`, `* ${res} ${v}`, `* * *`].some((w) => have.has(w)) ||
    // a rule limited to resourceNames is covered by one that is not
    (names !== undefined && have.has(`${g} ${res} ${v}`))
}

/** The parts of a CRD kpack's binaries and kpack's users see: names, scope, versions, conversion. */
function crdShape(crd: Obj) {
  const s = crd.spec
  return {
    group: s.group,
    scope: s.scope,
    kind: s.names.kind,
    plural: s.names.plural,
    singular: s.names.singular,
    listKind: s.names.listKind ?? `${s.names.kind}List`,
    shortNames: [...(s.names.shortNames ?? [])].sort(),
    categories: [...(s.names.categories ?? [])].sort(),
    served: s.versions.filter((v: Obj) => v.served).map((v: Obj) => v.name).sort(),
    storage: s.versions.filter((v: Obj) => v.storage).map((v: Obj) => v.name),
    subresources: Object.fromEntries(s.versions.map((v: Obj) => [v.name, Object.keys(v.subresources ?? {}).sort()])),
    conversion: s.conversion?.strategy === 'Webhook'
      ? {strategy: 'Webhook', service: `${s.conversion.webhook.clientConfig.service.namespace}/${s.conversion.webhook.clientConfig.service.name}`, reviews: s.conversion.webhook.conversionReviewVersions}
      : {strategy: 'None'},
  }
}

/**
 * kpack 0.16 also releases Windows build images (kpack 0.17 dropped Windows): kpi's bundles pin
 * Linux images only, so it renders neither their ConfigMaps nor the env that reads them, and kpack
 * then builds for Linux alone. The only difference this test allows.
 */
const WINDOWS_CONFIGMAPS = ['build-init-windows-image', 'completion-windows-image']
const WINDOWS_ENV = ['BUILD_INIT_WINDOWS_IMAGE', 'COMPLETION_WINDOWS_IMAGE']

/** A value ytt fills in at release time (`#@ data.values...`) parses as null: any value will do. */
const templated = (m: Record<string, unknown> = {}) =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k, v === null ? expect.anything() : v]))

const versions = kpackVersions()

describe.each(versions)('kpi renders what kpack %s releases', (version) => {
  const both = async () => ({kpack: await kpackRelease(version), kpi: await kpiRender(version)})

  it('the same CustomResourceDefinitions: names, scope, served and stored versions, subresources, conversion', async () => {
    const {kpack, kpi} = await both()
    const kpackCrds = byKind(kpack, 'CustomResourceDefinition')
    expect(byKind(kpi, 'CustomResourceDefinition').map(id).sort()).toEqual(kpackCrds.map(id).sort())
    for (const crd of kpackCrds) {
      expect(crdShape(find(kpi, crd)!), id(crd)).toEqual(crdShape(crd))
    }
  })

  it('every permission kpack\'s roles grant, under the same names, bound to the same subjects', async () => {
    const {kpack, kpi} = await both()
    for (const role of byKind(kpack, 'ClusterRole', 'Role')) {
      const mine = find(kpi, role)
      expect(mine, `${id(role)} is rendered`).toBeDefined()
      const have = new Set(grants(mine!.rules ?? []))
      const missing = grants(role.rules ?? []).filter((g) => !granted(have, g))
      expect(missing, `${id(role)}: grants kpack's release has that kpi's lacks`).toEqual([])
    }
    for (const binding of byKind(kpack, 'ClusterRoleBinding', 'RoleBinding')) {
      const mine = find(kpi, binding)
      expect(mine, `${id(binding)} is rendered`).toBeDefined()
      expect(mine!.roleRef, id(binding)).toEqual(binding.roleRef)
      const subject = (s: Obj) => `${s.kind} ${s.namespace ?? ''}/${s.name}`
      expect(mine!.subjects.map(subject), id(binding)).toEqual(expect.arrayContaining(binding.subjects.map(subject)))
    }
    for (const sa of byKind(kpack, 'ServiceAccount')) expect(find(kpi, sa), id(sa)).toBeDefined()
  })

  it('the webhook configurations, Service and Secret kpack\'s webhook reconciles by name', async () => {
    const {kpack, kpi} = await both()
    for (const o of byKind(kpack, 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration')) {
      const mine = find(kpi, o)
      expect(mine, `${id(o)} is rendered`).toBeDefined()
      const shape = (c: Obj) => c.webhooks.map((w: Obj) => ({
        name: w.name,
        service: `${w.clientConfig.service.namespace}/${w.clientConfig.service.name}`,
        admissionReviewVersions: w.admissionReviewVersions,
        sideEffects: w.sideEffects,
      }))
      expect(shape(mine!), id(o)).toEqual(shape(o))
    }
    for (const o of byKind(kpack, 'Service', 'Secret')) {
      const mine = find(kpi, o)
      expect(mine, `${id(o)} is rendered`).toBeDefined()
      if (o.kind === 'Service') {
        expect(mine!.spec.selector, id(o)).toEqual(o.spec.selector)
        expect(mine!.spec.ports.map((p: Obj) => [p.port, String(p.targetPort)]), id(o)).toEqual(o.spec.ports.map((p: Obj) => [p.port, String(p.targetPort)]))
      }
    }
  })

  it('the Deployments: names, service accounts, containers, every env variable and port kpack sets', async () => {
    const {kpack, kpi} = await both()
    for (const d of byKind(kpack, 'Deployment')) {
      const mine = find(kpi, d)
      expect(mine, `${id(d)} is rendered`).toBeDefined()
      const pod = d.spec.template.spec
      const minePod = mine!.spec.template.spec
      expect(minePod.serviceAccountName, id(d)).toBe(pod.serviceAccountName)
      expect(mine!.spec.selector.matchLabels, id(d)).toEqual(d.spec.selector.matchLabels)
      expect(mine!.spec.template.metadata.labels, id(d)).toEqual(expect.objectContaining(templated(d.spec.template.metadata.labels)))
      for (const c of pod.containers) {
        const mc = minePod.containers.find((x: Obj) => x.name === c.name)
        expect(mc, `${id(d)} container ${c.name}`).toBeDefined()
        const names = (env: Obj[] = []) => env.map((e) => e.name).filter((n) => !WINDOWS_ENV.includes(n)).sort()
        expect(names(mc.env), `${id(d)} container ${c.name}: env`).toEqual(expect.arrayContaining(names(c.env)))
        const ports = (ps: Obj[] = []) => ps.map((p) => `${p.name}:${p.containerPort}`).sort()
        expect(ports(mc.ports), `${id(d)} container ${c.name}: ports`).toEqual(expect.arrayContaining(ports(c.ports)))
        expect(mc.securityContext, `${id(d)} container ${c.name}: securityContext`).toEqual(expect.objectContaining(c.securityContext ?? {}))
      }
    }
  })

  it('the ConfigMaps kpack\'s controller reads, the PriorityClasses and the namespace\'s labels', async () => {
    const {kpack, kpi} = await both()
    for (const o of byKind(kpack, 'ConfigMap', 'PriorityClass').filter((o) => !WINDOWS_CONFIGMAPS.includes(o.metadata.name))) {
      const mine = find(kpi, o)
      expect(mine, `${id(o)} is rendered`).toBeDefined()
      if (o.kind === 'PriorityClass') expect([mine!.value, mine!.globalDefault ?? false], id(o)).toEqual([o.value, o.globalDefault ?? false])
      // image ConfigMaps carry kpi's relocated digests; the key kpack reads must be there
      if (o.kind === 'ConfigMap') expect(Object.keys(mine!.data ?? {}).sort(), id(o)).toEqual(expect.arrayContaining(Object.keys(o.data ?? {}).sort()))
    }
    for (const ns of byKind(kpack, 'Namespace')) {
      expect(find(kpi, ns)?.metadata.labels, id(ns)).toEqual(expect.objectContaining(ns.metadata.labels ?? {}))
    }
  })
})
