/**
 * kpi upgrade, diff, rollback and history through the CLI on the sandbox: the sample's v1
 * installed, then v2 (kpack 0.16 -> 0.17: the lifecycle moves from a ConfigMap to a
 * ClusterLifecycle). KWOK plays the pods, so Deployments roll out for real (scheduler, ReplicaSets)
 * but no kpack code runs: --wait=applied, and kpack Images and Builds are written here with the
 * status a real build leaves (through the status subresource).
 * Run `npm run build` first: the CLI runs from dist/.
 */
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parse, stringify} from 'yaml'
import {describe, expect, it} from 'vitest'
import type {DiffResult} from '../src/apply/diff.js'
import type {UpgradeResult} from '../src/apply/upgrade.js'
import {mapBundleImages} from '../src/bundle/index.js'
import type {Bundle} from '../src/bundle/types.js'
import type {LiveObject, ObjectRef} from '../src/kube/types.js'
import {parseReference} from '../src/oci/index.js'
import {upgrade} from '../src/apply/upgrade.js'
import {valuesCredentials} from '../src/apply/preflight.js'
import {loadInputs} from '../src/cli/operation.js'
import {KpiError} from '../src/errors.js'
import {createRegistryClient} from '../src/oci/index.js'
import type {ProgressEvent} from '../src/progress/events.js'
import {expectCleanFailure} from './helpers/cli.js'
import {contains, usePlatformSandbox} from './helpers/platform.js'

const p = usePlatformSandbox('upgrade')
let lock1 = ''
let values = ''
const applied = ['--wait=applied', '--timeout', '90s']
const deployment = (name: string): ObjectRef => ({apiVersion: 'apps/v1', kind: 'Deployment', name, namespace: 'kpack'})
const imageOf = async (name: string) => ((await p.kube.get(deployment(name)))!.spec as {template: {spec: {containers: Array<{image: string}>}}}).template.spec.containers[0]!.image
const lifecycleMap: ObjectRef = {apiVersion: 'v1', kind: 'ConfigMap', name: 'lifecycle-image', namespace: 'kpack'}
const clusterLifecycle: ObjectRef = {apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterLifecycle', name: 'default-lifecycle'}

/** An app Image whose last successful Build used these buildpacks on this run image, as kpack records it. */
async function appImage(name: string, build?: {buildpacks: string[]; runImage: string; stackId?: string}): Promise<void> {
  const ns = 'payments'
  await p.kube.apply({apiVersion: 'kpack.io/v1alpha2', kind: 'Image', metadata: {name, namespace: ns}, spec: {tag: `${p.sb.airgapPrefix}/apps/${name}`, builder: {kind: 'ClusterBuilder', name: 'base'}, source: {git: {url: 'https://git.example/app', revision: 'main'}}}} as LiveObject, {fieldManager: 'test'})
  if (!build) return
  const buildName = `${name}-build-1`
  const bref = {apiVersion: 'kpack.io/v1alpha2', kind: 'Build', name: buildName, namespace: ns}
  await p.kube.apply({apiVersion: 'kpack.io/v1alpha2', kind: 'Build', metadata: {name: buildName, namespace: ns, labels: {'image.kpack.io/image': name, 'image.kpack.io/buildNumber': '1'}}, spec: {tags: [`${p.sb.airgapPrefix}/apps/${name}`]}} as LiveObject, {fieldManager: 'test'})
  await p.kube.patchStatus(bref, {
    conditions: [{type: 'Succeeded', status: 'True', lastTransitionTime: new Date().toISOString()}],
    buildMetadata: build.buildpacks.map((bp) => ({id: bp.split('@')[0], version: bp.split('@')[1]})),
    stack: {runImage: build.runImage, id: build.stackId ?? 'io.buildpacks.stacks.jammy'},
    lifecycleVersion: '0.20.4',
  })
  await p.kube.patchStatus({apiVersion: 'kpack.io/v1alpha2', kind: 'Image', name, namespace: ns}, {latestBuildRef: buildName, observedGeneration: 1})
}

describe('kpi upgrade, diff, rollback and history on the sandbox', {timeout: 600_000}, () => {
  it('installs v1', async () => {
    p.nameRunDir()
    lock1 = await p.relocate('v1')
    values = await p.values('values')
    const r = await p.run(['install', '-b', lock1, '-f', values, '--ca-cert', p.sb.caFile, ...applied])
    expect(r.code, r.stderr).toBe(0)
    const h = await p.run(['history'])
    expect(h.code, h.stderr).toBe(0)
    expect(h.stdout).toMatch(/^REVISION +UPDATED +VERSION +KPACK +STATUS +DESCRIPTION\n1 +\S+ +1\.0\.0 +0\.16\.1 +deployed +install 1\.0\.0\n$/)
  })

  it('a v2 lock whose images were never relocated stops in preflight, naming them; the cluster is untouched', async () => {
    p.nameRunDir()
    const v2 = p.sb.bundle.v2!
    // what a lock for the air-gapped registry would say, had v2 been relocated there
    const unrelocated = mapBundleImages(v2, (ref) => {
      const r = parseReference(ref)
      return `${p.sb.airgapPrefix}/${r.repository}@${r.digest}`
    }) as Bundle
    const file = join(p.work, 'lock-v2-unrelocated.yaml')
    await writeFile(file, stringify(unrelocated))
    const before = (await p.kube.get(deployment('kpack-controller')))!.metadata.resourceVersion
    const heads = await p.heads()
    const r = await p.run(['upgrade', '-b', file, '-f', values, '--ca-cert', p.sb.caFile, ...applied])
    const line = expectCleanFailure(r)
    expect(r.code).toBe(7)
    expect(line).toMatch(/^Error: preflight: \d+ images missing: .*kpack\/controller@sha256:[0-9a-f]{64} \(used by Deployment kpack\/kpack-controller\)/)
    expect(line).toContain('relocate the bundle to this registry again')
    expect(r.stderr).toContain('version policy: done (upgrade 1.0.0 -> 1.1.0)')
    expect((await p.kube.get(deployment('kpack-controller')))!.metadata.resourceVersion).toBe(before)
    expect(await p.heads()).toEqual(heads)
    // the install released the lease; the refused upgrade never took it
    const lease = await p.kube.get({apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'kpi-operation', namespace: 'kpi-system'})
    expect((lease!.spec as {holderIdentity?: string}).holderIdentity).toBeFalsy()
  })

  let diffDoc: DiffResult
  it('kpi diff lists per stage what v2 adds, changes (field by field) and removes, and what kpack will do to each Image by its rules', async () => {
    p.nameRunDir()
    const lock2 = await p.lock('v2')
    const v1 = await p.lock('v1')
    await appImage('java-app', {buildpacks: ['example/java@1.2.0', 'example/jdk@17.0.10', 'example/maven@3.9.6'], runImage: v1.stacks[0]!.runImage})
    await appImage('go-app', {buildpacks: ['example/go@1.4.0'], runImage: v1.stacks[0]!.runImage})
    await appImage('fresh-app', {buildpacks: ['example/java@1.2.0'], runImage: lock2.stacks[0]!.runImage})
    await appImage('other-stack-app', {buildpacks: ['example/java@1.2.0'], runImage: v1.stacks[0]!.runImage, stackId: 'io.buildpacks.stacks.bionic'})
    await appImage('never-built')
    const lock2File = await p.relocate('v2')

    const r = await p.run(['diff', '-b', lock2File, '-f', values, '--ca-cert', p.sb.caFile, '--json'])
    expect(r.code, r.stderr).toBe(1)
    diffDoc = JSON.parse(r.stdout) as DiffResult
    expect(diffDoc).toMatchObject({from: {revision: 1, version: '1.0.0', kpackVersion: '0.16.1'}, to: {version: '1.1.0', kpackVersion: lock2.kpack.version}, differences: true})
    const stage = (n: string) => diffDoc.stages.find((s) => s.name === n)!
    expect(stage('crds').added).toContain('CustomResourceDefinition clusterlifecycles.kpack.io')
    const controller = stage('controllers').changed.find((c) => c.object === 'Deployment kpack/kpack-controller')!
    expect(controller.fields).toContainEqual({path: 'spec.template.spec.containers[name=controller].image', before: v1.kpack.images.controller, after: lock2.kpack.images.controller})
    expect(stage('platform').added).toEqual(['ClusterLifecycle default-lifecycle'])
    expect(stage('platform').changed.map((c) => c.object)).toEqual(expect.arrayContaining(['ClusterStack base', 'ClusterStore default']))
    expect(stage('config').removed).toEqual(['ConfigMap kpack/lifecycle-image'])
    // Secret data is compared, never shown
    expect(r.stdout).not.toContain(p.sb.airgap.password!)
    const impact = Object.fromEntries(diffDoc.kpackImpact.map((i) => [i.image, i]))
    expect(impact['payments/java-app']).toMatchObject({impact: 'rebase', reasons: ['STACK']})
    expect(impact['payments/go-app']).toMatchObject({impact: 'rebuild', reasons: ['BUILDPACK', 'STACK']})
    expect(impact['payments/go-app']!.details[0]).toBe('example/go@1.4.0 no longer in the builder')
    expect(impact['payments/fresh-app']).toMatchObject({impact: 'none', reasons: []})
    expect(impact['payments/other-stack-app']).toMatchObject({impact: 'rebuild', reasons: ['STACK']})
    expect(impact['payments/never-built']).toMatchObject({impact: 'unknown'})

    const text = await p.run(['diff', '-b', lock2File, '-f', values, '--ca-cert', p.sb.caFile])
    expect(text.code).toBe(1)
    expect(text.stdout).toMatch(/^1\.0\.0 \(kpack 0\.16\.1, revision 1\) -> 1\.1\.0/)
    expect(text.stdout).toContain(`      spec.template.spec.containers[name=controller].image: ${v1.kpack.images.controller} -> ${lock2.kpack.images.controller}`)
    expect(text.stdout).toContain('  - ConfigMap kpack/lifecycle-image')
    expect(text.stdout).toContain('  payments/java-app (ClusterBuilder base): rebase [STACK]')
    expect(text.stdout.trim().split('\n').at(-1)).toBe('differences: yes')
    // against what is deployed, nothing differs
    const same = await p.run(['diff', '-b', lock1, '-f', values, '--ca-cert', p.sb.caFile])
    expect(same.code, same.stdout + same.stderr).toBe(0)
    expect(same.stdout.trim().split('\n').at(-1)).toBe('differences: none')
    // a kpack feature flag turned on: one change, naming the variable (env compared by name,
    // through the apiserver's dry run of the apply)
    const flagged = await p.values('values-flagged', {features: {injectedSidecarSupport: true}})
    const flag = await p.run(['diff', '-b', lock1, '-f', flagged, '--ca-cert', p.sb.caFile, '--json'])
    expect(flag.code, flag.stderr).toBe(1)
    const changed = (JSON.parse(flag.stdout) as DiffResult).stages.flatMap((st) => st.changed)
    expect(changed.map((c) => [c.object, c.fields])).toEqual([['Deployment kpack/kpack-controller', [
      {path: 'spec.template.spec.containers[name=controller].env[name=INJECTED_SIDECAR_SUPPORT].value', before: 'false', after: 'true'},
    ]]])
  })

  it('two upgrades started together: exactly one runs, the other names the holder; v2 is deployed and the lifecycle ConfigMap pruned', async () => {
    p.nameRunDir()
    const lock2File = await p.relocate('v2')
    const lock2 = await p.lock('v2')
    const args = ['upgrade', '-b', lock2File, '-f', values, '--ca-cert', p.sb.caFile, ...applied, '--json']
    const [a, b] = await Promise.all([p.run(args), p.run(args)])
    const won = [a, b].filter((x) => x.code === 0)
    const lost = [a, b].filter((x) => x.code !== 0)
    expect(won.length, a.stderr + b.stderr).toBe(1)
    expect(lost[0]!.code).toBe(9)
    // refused at the lease, or (on a loaded machine, one whose preflight outlasted the other's whole
    // run) once it holds the lease, by what the other changed meanwhile
    expect(JSON.parse(lost[0]!.stdout).error.message).toMatch(/^another kpi operation (is running: upgrade by kpi upgrade \(pid \d+ on \S+\) since \d{4}-\d\d-\d\dT|changed the installation while this one ran its preflight: revision 2 \(upgrade 1\.0\.0 -> 1\.1\.0\) is now deployed$)/)
    const doc = JSON.parse(won[0]!.stdout) as UpgradeResult
    expect(doc).toMatchObject({revision: 2, from: {revision: 1, version: '1.0.0'}, version: '1.1.0', pruned: ['ConfigMap kpack/lifecycle-image']})
    // preflight asks the registry for the images v2 brings in, not for those revision 1 runs
    const asked = /"task":"images","status":"done","message":"(\d+) images present at their digests; (\d+) run by revision 1, not asked again"/.exec(won[0]!.stderr)
    expect(asked, won[0]!.stderr).toBeTruthy()
    const total = Number(/"task":"images","status":"start","message":"(\d+) images, (\d+) new"/.exec(won[0]!.stderr)?.[1])
    expect([Number(asked![1]) > 0, Number(asked![2]) > 0, Number(asked![1]) + Number(asked![2])]).toEqual([true, true, total])
    // what diff said would change is what changed
    const said = diffDoc.stages.flatMap((s) => [...s.added, ...s.changed.map((c) => c.object)]).sort()
    expect(doc.changedObjects.map((c) => c.object).sort()).toEqual(said)
    expect(doc.pruned).toEqual(diffDoc.stages.flatMap((s) => s.removed))

    expect(await imageOf('kpack-controller')).toBe(lock2.kpack.images.controller)
    expect(await imageOf('kpack-webhook')).toBe(lock2.kpack.images.webhook)
    expect(await p.kube.get(lifecycleMap)).toBeUndefined()
    expect(await p.kube.get(clusterLifecycle)).toBeDefined()
    const h = await p.run(['history'])
    expect(h.stdout).toMatch(/\n1 +\S+ +1\.0\.0 +0\.16\.1 +superseded +install 1\.0\.0\n2 +\S+ +1\.1\.0 +\S+ +deployed +upgrade 1\.0\.0 -> 1\.1\.0\n$/)
    const st = await p.run(['status'])
    expect(st.code, st.stdout).toBe(0)
    expect(st.stdout).toMatch(/^build-service 1\.1\.0 .*revision 2, deployed \(upgrade\)/)
  })

  it('kpi rollback 1 brings back revision 1\'s objects, specs equal, healthy; the ConfigMap returns; the ClusterLifecycle stays with its CRD', async () => {
    p.nameRunDir()
    const r = await p.run(['rollback', '1', ...applied])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^Rolled back to revision 1: build-service 1\.0\.0 \(kpack 0\.16\.1\), recorded as revision 3, in /)
    expect(r.stdout).toContain('kept: ClusterLifecycle default-lifecycle: the new revision\'s CRDs do not define ClusterLifecycle')
    expect(r.stdout).toContain('kept: CustomResourceDefinition clusterlifecycles.kpack.io: a CRD is never deleted')
    const rev1 = await p.record(1)
    for (const {object} of rev1.objects.filter((o) => o.object.kind === 'Deployment')) {
      const live = await p.kube.get({apiVersion: object.apiVersion, kind: object.kind, name: object.metadata.name, namespace: object.metadata.namespace})
      expect(contains(live?.spec, object.spec), `${object.kind} ${object.metadata.name}`).toBe(true)
    }
    // every object of revision 1 as the API server would have it from revision 1's lock and values:
    // a server-side dry run of each finds nothing to change
    const same = await p.run(['diff', '-b', lock1, '-f', values, '--ca-cert', p.sb.caFile, '--json'])
    expect(same.code, same.stdout + same.stderr).toBe(0)
    expect((JSON.parse(same.stdout) as DiffResult).stages.every((x) => !x.added.length && !x.changed.length && !x.removed.length)).toBe(true)
    expect(await p.kube.get(clusterLifecycle)).toBeDefined()
    expect(await p.kube.get(lifecycleMap)).toBeDefined()
    const st = await p.run(['status'])
    expect(st.code, st.stdout).toBe(0)
    expect(st.stdout).toMatch(/^build-service 1\.0\.0 \(kpack 0\.16\.1\): revision 3, deployed \(rollback\)/)
    expect(st.stdout, st.stdout).toMatch(/controllers +healthy +(\d+)\/\1 present, \d+\/\d+ Deployments available/)
    const h = await p.run(['history', '--json'])
    const rows = (JSON.parse(h.stdout) as {revisions: Array<{revision: number; status: string; description: string}>}).revisions
    expect(rows.map((x) => [x.revision, x.status, x.description])).toEqual([
      [1, 'superseded', 'install 1.0.0'], [2, 'superseded', 'upgrade 1.0.0 -> 1.1.0'], [3, 'deployed', 'rollback to 1'],
    ])
    const rec = JSON.stringify(await p.record(3))
    expect(rec).not.toContain(p.sb.airgap.password!)
    for (const o of p.outputs) expect(o).not.toContain(p.sb.airgap.password!)
  })

  it('an upgrade whose preflight read the installation before another one finished is refused once it holds the lease, writing nothing', async () => {
    p.nameRunDir()
    const lock2File = await p.relocate('v2')
    const {lock, values: vals, render, registryOptions} = await loadInputs({bundle: lock2File, values, 'ca-cert': [p.sb.caFile]})
    // this upgrade's image check waits until the other upgrade has run from start to end
    const real = createRegistryClient({...registryOptions, credentials: valuesCredentials(vals.registry)})
    let asked!: () => void
    const checking = new Promise<void>((r) => (asked = r))
    let go!: () => void
    const other = new Promise<void>((r) => (go = r))
    const client = {...real, headManifest: async (...a: Parameters<typeof real.headManifest>) => {
      asked()
      await other
      return real.headManifest(...a)
    }}
    const events: ProgressEvent[] = []
    const late = upgrade({kube: p.kube, lock, values: vals, render, wait: 'applied', timeoutMs: 90_000, kpiVersion: 'test', registryOptions, registryClient: client, onEvent: (e) => events.push(e)})
    late.catch(() => {})
    await checking
    const r = await p.run(['upgrade', '-b', lock2File, '-f', values, '--ca-cert', p.sb.caFile, ...applied])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/as revision 4 in /)
    const heads = await p.heads()
    go()
    const e = await late.then(() => undefined, (x: unknown) => x)
    expect(e).toBeInstanceOf(KpiError)
    expect((e as KpiError).kind).toBe('conflict')
    expect((e as KpiError).message).toBe('another kpi operation changed the installation while this one ran its preflight: revision 4 (upgrade 1.0.0 -> 1.1.0) is now deployed')
    expect(await p.heads()).toEqual(heads)
    expect(events.some((x) => x.type === 'stage-start' && x.stage !== 'preflight')).toBe(false)
    await real.close()
  })

  it('a new proxy password rolls the controller, which reads it from kpi-proxy at start; the same inputs again roll nothing', async () => {
    p.nameRunDir()
    const lock2File = await p.relocate('v2')
    const withProxy = async (name: string, password: string) => {
      const v = parse(await readFile(values, 'utf8')) as Record<string, unknown>
      const file = join(p.work, `${name}.yaml`)
      await writeFile(file, stringify({...v, proxy: {httpsProxy: `http://squid:${password}@proxy.corp.example:3128`}, cluster: {serviceCIDR: '10.96.0.0/16'}}))
      return file
    }
    const template = async () => {
      const d = (await p.kube.get(deployment('kpack-controller')))!
      const t = (d.spec as {template: {metadata: {annotations?: Record<string, string>}; spec: {containers: Array<{env?: unknown[]}>}}}).template
      return {generation: d.metadata.generation!, versions: t.metadata.annotations?.['kpi.dev/secret-versions'], env: JSON.stringify(t.spec.containers[0]!.env)}
    }
    const secretVersion = async () => (await p.kube.get({apiVersion: 'v1', kind: 'Secret', name: 'kpi-proxy', namespace: 'kpack'}))!.metadata.resourceVersion
    const first = await withProxy('proxy-a', 'first-Pr0xy-pw')
    const second = await withProxy('proxy-b', 'second-Pr0xy-pw')
    const up = (file: string) => p.run(['upgrade', '-b', lock2File, '-f', file, '--ca-cert', p.sb.caFile, ...applied])

    let r = await up(first)
    expect(r.code, r.stderr).toBe(0)
    const a = await template()
    expect(a.versions).toBe(`kpi-proxy=${await secretVersion()}`)

    // the rendered Deployment is the same (env from the Secret): only the Secret's new version tells
    r = await p.run(['diff', '-b', lock2File, '-f', second, '--ca-cert', p.sb.caFile, '--json'])
    expect(r.code, r.stderr).toBe(1)
    const planned = JSON.parse(r.stdout) as DiffResult
    const controllers = planned.stages.flatMap((s) => s.changed).find((c) => c.object === 'Deployment kpack/kpack-controller')
    expect(controllers?.fields).toEqual([{path: 'spec.template.metadata.annotations.kpi.dev/secret-versions', before: a.versions, after: 'new versions of Secret kpi-proxy (the pods restart)'}])

    r = await up(second)
    expect(r.code, r.stderr).toBe(0)
    // the inputs digest leaves credentials out: the same revision, and said why
    expect(r.stdout).toContain('Secret kpack/kpi-proxy: new data, as from new credentials in the values (a revision records no credentials, so this stays revision')
    const b = await template()
    expect(b.env).toBe(a.env)
    expect(b.versions).toBe(`kpi-proxy=${await secretVersion()}`)
    expect(b.versions).not.toBe(a.versions)
    expect(b.generation).toBeGreaterThan(a.generation)

    r = await up(second)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('0 drifted objects corrected')
    expect(r.stdout).not.toContain('new data')
    expect(await template()).toEqual(b)
    for (const o of p.outputs) {
      expect(o).not.toContain('first-Pr0xy-pw')
      expect(o).not.toContain('second-Pr0xy-pw')
    }
  })
})
