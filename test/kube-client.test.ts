/**
 * The Kubernetes client against a real control plane (etcd, kube-apiserver, controller-manager,
 * scheduler, KWOK): kubeconfig loading, errors that name the cluster or the object, server-side
 * apply and dry runs, access reviews, and every wait kpi uses (CRD Established, Deployment rollout,
 * Service endpoints, kpack Ready written through the status subresource as kpack writes it).
 */
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parse, stringify} from 'yaml'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {decide} from '../src/apply/changeset.js'
import {untouchedSinceApplied} from '../src/apply/untouched.js'
import {planStages} from '../src/apply/plan.js'
import {runStage} from '../src/apply/stage.js'
import {KpiError} from '../src/errors.js'
import {createKubeClient, type Kube} from '../src/kube/client.js'
import {loadKubeConfig} from '../src/kube/config.js'
import {createRequester, riding, type Requester} from '../src/kube/http.js'
import {endpointsProbe, crdProbe, deploymentProbe, kpackProbe, waitUntil} from '../src/kube/wait.js'
import {watchWakeups} from '../src/kube/wake.js'
import {refOf, type LiveObject} from '../src/kube/types.js'
import {CHECKS} from '../src/kube/checks.js'
import {checkAccessAndImages} from '../src/apply/preflight.js'
import type {ProgressEvent} from '../src/progress/events.js'
import {renderPlatform} from '../src/render/render.js'
import type {KubeObject, RenderedObject} from '../src/render/types.js'
import {useControlPlane} from './helpers/controlplane.js'
import {issueCert} from '../src/sandbox/pki.js'
import {freePort} from '../src/sandbox/procs.js'
import {acquireLease} from '../src/revision/lease.js'
import {lock17, values} from './fixtures/render/helpers.js'


// a missing control-plane binary fails the file with the tool named (scripts/tools.sh builds them)
const plane = useControlPlane('kube')
const nameRunDir = () => plane.nameRunDir()
let kube: Kube
let objects: RenderedObject[]

async function rejection(p: Promise<unknown>): Promise<KpiError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(KpiError)
    return e as KpiError
  }
  throw new Error('expected a rejection')
}

/** A kubeconfig like the admin's, but for a user the cluster CA vouches for and RBAC grants nothing (until a test binds it a role). */
async function unprivilegedKubeconfig(user = 'nobody'): Promise<string> {
  const pki = join(plane.cp.runDir, 'pki')
  const ca = {dir: pki, cert: join(pki, 'ca.crt'), key: join(pki, 'ca.key'), certPem: await readFile(join(pki, 'ca.crt'), 'utf8')}
  const cert = await issueCert(ca, {name: user, commonName: user, usage: 'client'})
  const doc = parse(await readFile(plane.cp.kubeconfig, 'utf8')) as {users: Array<{name: string; user: Record<string, string>}>}
  doc.users[0]!.user = {
    'client-certificate-data': Buffer.from(cert.certPem).toString('base64'),
    'client-key-data': Buffer.from(await readFile(cert.key, 'utf8')).toString('base64'),
  }
  const file = join(plane.runDir, `${user}.kubeconfig`)
  await writeFile(file, stringify(doc), {mode: 0o600})
  return file
}

const obj = (o: Record<string, unknown>) => o as unknown as LiveObject

describe('kube client on a real control plane', () => {
  beforeAll(async () => {
    kube = await createKubeClient({kubeconfig: plane.cp.kubeconfig})
    objects = renderPlatform(await lock17(), await values()).objects
  })
  afterAll(async () => {
    kube?.close()
  })

  it('loads the kubeconfig from --kubeconfig, $KUBECONFIG and --context, naming what is wrong', async () => {
    nameRunDir()
    expect(loadKubeConfig({kubeconfig: plane.cp.kubeconfig}).server).toBe(plane.cp.server)
    expect(loadKubeConfig({}, {KUBECONFIG: plane.cp.kubeconfig}).context).toBe('kpi-sandbox')
    expect(() => loadKubeConfig({kubeconfig: join(plane.runDir, 'nope')})).toThrow(/kubeconfig .*nope does not exist/)
    const e = (() => {
      try {
        loadKubeConfig({kubeconfig: plane.cp.kubeconfig, context: 'prod'})
      } catch (x) {
        return x as KpiError
      }
      throw new Error('accepted an unknown context')
    })()
    expect(e.kind).toBe('usage')
    expect(e.message).toContain('--context prod is not a context')
    expect(e.hint).toContain('kpi-sandbox')
    expect(() => loadKubeConfig({}, {HOME: plane.runDir, KUBECONFIG: ''})).toThrow(/no kubeconfig/)
  })

  it('an unreachable cluster is a network error naming the API URL, with a kubeconfig hint', async () => {
    nameRunDir()
    const port = await freePort()
    const doc = parse(await readFile(plane.cp.kubeconfig, 'utf8')) as {clusters: Array<{cluster: {server: string}}>}
    doc.clusters[0]!.cluster.server = `https://127.0.0.1:${port}`
    const file = join(plane.runDir, 'closed.kubeconfig')
    await writeFile(file, stringify(doc))
    const k = await createKubeClient({kubeconfig: file})
    try {
      const e = await rejection(k.version())
      expect(e.kind).toBe('network')
      expect(e.message).toBe(`cannot reach the Kubernetes API at https://127.0.0.1:${port} (ECONNREFUSED)`)
      expect(e.hint).toMatch(/--kubeconfig.*--context/)
    } finally {
      k.close()
    }
  })

  it('reads the server version and answers access reviews for admin and for a user RBAC grants nothing', async () => {
    nameRunDir()
    const v = await kube.version()
    expect(v.major).toBe(1)
    expect(v.minor).toBeGreaterThanOrEqual(29)
    expect((await kube.canI({verb: 'create', group: 'apps', resource: 'deployments', namespace: 'kpack'})).allowed).toBe(true)
    const nobody = await createKubeClient({kubeconfig: await unprivilegedKubeconfig()})
    try {
      expect((await nobody.canI({verb: 'create', group: 'apps', resource: 'deployments', namespace: 'kpack'})).allowed).toBe(false)
      const e = await rejection(nobody.apply(obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x', namespace: 'default'}})))
      expect(e.kind).toBe('auth')
      expect(e.message).toMatch(/^ConfigMap default\/x: forbidden: User "nobody" cannot patch resource "configmaps"/)
    } finally {
      nobody.close()
    }
  })

  it('an apply conflict carries the status, reason and the conflicting manager and field as details', async () => {
    nameRunDir()
    const cm = obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'kpi-conflict', namespace: 'default', labels: {}, annotations: {}}, data: {a: '1', b: '1'}})
    await kube.apply(cm)
    await kube.apply(obj({...cm, data: {a: '2', b: '2'}}), {fieldManager: 'someone-else', force: true})
    const conflict = await rejection(kube.apply(cm))
    expect(conflict.details).toEqual({
      source: 'kubernetes', status: 409, reason: 'Conflict',
      conflicts: [{manager: 'someone-else', field: '.data.a'}, {manager: 'someone-else', field: '.data.b'}],
    })
    expect(await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-conflict', namespace: 'default'})).toBe(true)
  })

  it('fields kpi wrote by a PUT (a rollback) are taken back by its apply without a conflict; another manager\'s are a conflict, named', async () => {
    nameRunDir()
    const cm = obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'kpi-own', namespace: 'default'}, data: {a: '1'}})
    const planned = {stage: 'config' as const, object: cm as unknown as KubeObject, check: 'applied' as const, wave: 1}
    await kube.apply(cm)
    const live = (await kube.get(refOf(cm)))!
    await kube.replace({...live, data: {a: '2'}})
    const own = await decide(kube, planned, false)
    expect(own).toMatchObject({action: 'update', takeOwn: true})
    expect(own.conflict).toBeUndefined()
    await kube.apply(cm, {force: true})
    expect(await decide(kube, planned, false)).toMatchObject({action: 'unchanged'})
    await kube.apply(obj({...cm, data: {a: '3'}}), {fieldManager: 'kubectl-edit', force: true})
    const other = await decide(kube, planned, false)
    expect(other).toMatchObject({action: 'update', conflict: 'kubectl-edit: .data.a'})
    expect(other.takeOwn).toBeUndefined()
    expect(await kube.delete(refOf(cm))).toBe(true)
  })

  it('an object kpi applied and nobody touched since needs no dry run; another writer, a changed value or a new desire does', async () => {
    nameRunDir()
    const cm = obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'kpi-untouched', namespace: 'default', labels: {a: 'b'}}, data: {a: '1'}}) as unknown as KubeObject
    await kube.apply(cm as unknown as LiveObject)
    const live = () => kube.get(refOf(cm)) as Promise<LiveObject>
    expect(untouchedSinceApplied(cm, cm, await live())).toBe(true)
    expect(untouchedSinceApplied({...cm, data: {a: '2'}}, cm, await live()), 'the new revision wants it otherwise').toBe(false)
    expect(untouchedSinceApplied(cm, undefined, await live()), 'the deployed revision did not apply it').toBe(false)
    expect(untouchedSinceApplied({...cm, kind: 'Secret'}, {...cm, kind: 'Secret'}, {...(await live()), kind: 'Secret'}), 'a Secret').toBe(false)
    // another writer, a second later (managedFields times have a one-second grain), even of a field kpi does not set
    await new Promise((r) => setTimeout(r, 1100))
    await kube.apply(obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'kpi-untouched', namespace: 'default'}, data: {other: 'x'}}), {fieldManager: 'someone-else'})
    expect(untouchedSinceApplied(cm, cm, await live())).toBe(false)
    // kpi applies again, a second later: untouched since that; then the value changes under it
    await new Promise((r) => setTimeout(r, 1100))
    await kube.apply(obj({...cm, data: {a: '1', again: 'yes'}} as unknown as Record<string, unknown>))
    const again = {...cm, data: {a: '1', again: 'yes'}} as KubeObject
    expect(untouchedSinceApplied(again, again, await live())).toBe(true)
    const l = await live()
    expect(untouchedSinceApplied(again, again, {...l, data: {a: '9', again: 'yes'}}), 'a value differs').toBe(false)
    expect(await kube.delete(refOf(cm))).toBe(true)
  })

  it('a user whose credentials come from an exec plugin is served by @kubernetes/client-node', async () => {
    nameRunDir()
    const doc = parse(await readFile(plane.cp.kubeconfig, 'utf8')) as {users: Array<{name: string; user: Record<string, unknown>}>}
    const admin = doc.users[0]!.user
    const pem = async (data: unknown, file: unknown) => (data ? Buffer.from(String(data), 'base64').toString('utf8') : await readFile(String(file), 'utf8'))
    const credential = {apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: {
      clientCertificateData: await pem(admin['client-certificate-data'], admin['client-certificate']),
      clientKeyData: await pem(admin['client-key-data'], admin['client-key']),
    }}
    const json = join(plane.runDir, 'credential.json')
    await writeFile(json, JSON.stringify(credential), {mode: 0o600})
    doc.users[0]!.user = {exec: {apiVersion: 'client.authentication.k8s.io/v1', command: 'cat', args: [json], interactiveMode: 'Never'}}
    const file = join(plane.runDir, 'exec.kubeconfig')
    await writeFile(file, stringify(doc), {mode: 0o600})
    expect(loadKubeConfig({kubeconfig: file}).needsLibrary).toBe(true)
    const k = await createKubeClient({kubeconfig: file})
    try {
      expect((await k.version()).major).toBe(1)
      expect((await k.canI({verb: '*', group: '*', resource: '*'})).allowed).toBe(true)
    } finally {
      k.close()
    }
  })

  it('server-side applies as field manager kpi: dry runs write nothing, the same apply is a no-op, errors name the object', async () => {
    nameRunDir()
    const cm = obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'kpi-probe', namespace: 'default', labels: {}, annotations: {}}, data: {a: '1'}})
    const dry = await kube.apply(cm, {dryRun: true})
    expect(dry.data).toEqual({a: '1'})
    expect(await kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-probe', namespace: 'default'})).toBeUndefined()
    const first = await kube.apply(cm)
    const managers = (first.metadata.managedFields as Array<{manager: string; operation: string}>).map((m) => `${m.manager}/${m.operation}`)
    expect(managers).toEqual(['kpi/Apply'])
    const again = await kube.apply(cm)
    expect(again.metadata.resourceVersion).toBe(first.metadata.resourceVersion)
    const listed = await kube.list('v1', 'ConfigMap', {namespace: 'default', labelSelector: ''})
    expect(listed.map((o) => `${o.kind} ${o.metadata.name}`)).toContain('ConfigMap kpi-probe')

    // another manager owns a field kpi sets: a conflict, until kpi forces
    await kube.apply(obj({...cm, data: {a: '2'}}), {fieldManager: 'someone-else', force: true})
    const conflict = await rejection(kube.apply(cm))
    expect(conflict.kind).toBe('conflict')
    expect(conflict.message).toMatch(/^ConfigMap default\/kpi-probe: Apply failed with 1 conflict: conflict with "someone-else"/)
    expect((await kube.apply(cm, {force: true})).data).toEqual({a: '1'})

    expect(await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-probe', namespace: 'default'})).toBe(true)
    expect(await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-probe', namespace: 'default'})).toBe(false)

    const unknownKind = await rejection(kube.apply(obj({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', metadata: {name: 'early'}, spec: {}})))
    expect(unknownKind.kind).toBe('not-found')
    expect(unknownKind.message).toBe('ClusterStack early: the cluster does not serve ClusterStack in kpack.io/v1alpha2')
  })

  it('waits for CRDs to be Established, then a custom resource re-applied with empty metadata maps stays unchanged', async () => {
    nameRunDir()
    const crds = objects.filter((o) => o.object.kind === 'CustomResourceDefinition')
    for (const c of crds) await kube.apply(obj(c.object))
    const outcomes = await Promise.all(crds.map((c) => waitUntil(crdProbe(kube, {apiVersion: c.object.apiVersion, kind: c.object.kind, name: c.object.metadata.name}), {timeoutMs: 60_000})))
    expect(outcomes.map((o) => o.outcome)).toEqual(crds.map(() => 'ready'))

    const stack = structuredClone(objects.find((o) => o.object.kind === 'ClusterStack')!.object)
    // empty metadata maps (as other tools write them) must not turn every apply into a write
    stack.metadata.annotations = {}
    const a = await kube.apply(obj(stack))
    await new Promise((r) => setTimeout(r, 1100))
    const b = await kube.apply(obj(stack))
    expect(b.metadata.resourceVersion).toBe(a.metadata.resourceVersion)

    const bad = structuredClone(objects.find((o) => o.object.kind === 'ClusterBuilder')!.object) as KubeObject & {spec: Record<string, unknown>}
    bad.spec.stack = {kind: 'Stack', name: 'base'}
    const e = await rejection(kube.apply(obj(bad)))
    expect(e.kind).toBe('input')
    expect(e.message).toMatch(/^ClusterBuilder base: ClusterBuilder\.kpack\.io "base" is invalid: spec\.stack\.kind: Unsupported value: "Stack"/)
  })

  it('kpack Ready, written through the status subresource as kpack writes it: no status, False with kpack\'s message, True', async () => {
    nameRunDir()
    const ref = {apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', name: 'base'}
    const probe = kpackProbe(kube, ref)
    expect((await probe()).readiness).toEqual({state: 'progressing', message: 'kpack has not reconciled it yet (no status)'})
    const live = (await kube.get(ref))!
    await kube.patchStatus(ref, {observedGeneration: live.metadata.generation, conditions: [{type: 'Ready', status: 'False', reason: 'ReconcileFailed', message: 'run image has no io.buildpacks.stack.id label', lastTransitionTime: new Date().toISOString()}]})
    const f = await waitUntil(probe, {timeoutMs: 5000})
    expect(f.outcome).toBe('failed')
    expect(f.readiness.message).toBe('run image has no io.buildpacks.stack.id label')
    // a spec change kpack has not seen yet is not judged by the old status
    const changed = structuredClone(objects.find((o) => o.object.kind === 'ClusterStack')!.object) as KubeObject & {spec: {id: string}}
    changed.spec.id = 'io.buildpacks.stacks.noble'
    await kube.apply(obj(changed))
    expect((await probe()).readiness.state).toBe('progressing')
    const g = (await kube.get(ref))!.metadata.generation
    setTimeout(() => {
      void kube.patchStatus(ref, {observedGeneration: g, conditions: [{type: 'Ready', status: 'True', lastTransitionTime: new Date().toISOString()}]})
    }, 500)
    const t = await waitUntil(probe, {timeoutMs: 10_000})
    expect(t.outcome).toBe('ready')
  })

  it('waits for a Deployment rollout (KWOK runs the pods) and for its Service\'s ready endpoints', async () => {
    nameRunDir()
    await kube.apply(obj({apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'wait-test'}}))
    const labels = {app: 'probe'}
    await kube.apply(obj({
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'probe', namespace: 'wait-test'},
      spec: {replicas: 2, selector: {matchLabels: labels}, template: {metadata: {labels}, spec: {containers: [{name: 'c', image: 'example.test/probe@sha256:' + 'a'.repeat(64)}]}}},
    }))
    await kube.apply(obj({apiVersion: 'v1', kind: 'Service', metadata: {name: 'probe', namespace: 'wait-test'}, spec: {selector: labels, ports: [{port: 443, targetPort: 8443}]}}))
    const seen: string[] = []
    const d = await waitUntil(deploymentProbe(kube, {apiVersion: 'apps/v1', kind: 'Deployment', name: 'probe', namespace: 'wait-test'}), {timeoutMs: 60_000, onChange: (r) => seen.push(r.message)})
    expect(d.outcome).toBe('ready')
    expect(d.readiness.message).toBe('2/2 replicas available')
    // on a loaded machine the first look may already see it available
    expect(seen.length).toBeGreaterThanOrEqual(1)
    const s = await waitUntil(endpointsProbe(kube, {apiVersion: 'v1', kind: 'Service', name: 'probe', namespace: 'wait-test'}), {timeoutMs: 60_000})
    expect(s.outcome).toBe('ready')
    // ready at the first ready endpoint; the EndpointSlice controller may publish the second a moment later
    expect(s.readiness.message).toMatch(/^[12] ready endpoints?$/)
    const probe = endpointsProbe(kube, {apiVersion: 'v1', kind: 'Service', name: 'probe', namespace: 'wait-test'})
    let last = s.readiness.message
    for (let i = 0; i < 50 && last !== '2 ready endpoints'; i++) {
      await new Promise((r) => setTimeout(r, 200))
      last = (await probe()).readiness.message
    }
    expect(last).toBe('2 ready endpoints')
  })

  it('objects in a namespace the operation just created go in without a read; one someone made there meanwhile is decided again, its conflict named', async () => {
    nameRunDir()
    const ns = 'kpi-fresh-ns'
    const reads: string[] = []
    const counting: Kube = {...kube, get: (ref) => {
      reads.push(`${ref.kind}/${ref.name}`)
      return kube.get(ref)
    }}
    const planned = (o: Record<string, unknown>, wave: number) => ({stage: 'kpack' as const, object: o as unknown as KubeObject, check: 'applied' as const, wave})
    const cm = (name: string, data: Record<string, string>) => ({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name, namespace: ns, labels: {'app.kubernetes.io/managed-by': 'kpi'}}, data})
    const fresh = new Set<string>()
    const opts = {kube: counting, wait: 'applied' as const, timeoutMs: 30_000, onEvent: () => {}, fresh}
    const first = await runStage({name: 'crds', title: 'namespaces', objects: [planned({apiVersion: 'v1', kind: 'Namespace', metadata: {name: ns}}, 0)]}, opts)
    expect(first.changes.map((c) => c.action)).toEqual(['create'])
    expect([...fresh]).toEqual([ns])
    // between the stages another tool makes one of the next stage's objects, with a value kpi sets otherwise
    await kube.apply(obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'theirs', namespace: ns}, data: {a: 'theirs'}}), {fieldManager: 'someone-else'})
    reads.length = 0
    const second = await runStage({name: 'config', title: 'config', objects: [planned(cm('ours', {a: '1'}), 1), planned(cm('theirs', {a: 'kpi'}), 1)]}, opts)
    expect(second.changes.map((c) => [c.object, c.action])).toEqual([['ConfigMap kpi-fresh-ns/ours', 'create'], ['ConfigMap kpi-fresh-ns/theirs', 'update']])
    expect(second.conflicts).toEqual(['ConfigMap kpi-fresh-ns/theirs: took over fields from another manager: someone-else: .data.a'])
    // the only read: the object whose apply met the other manager's field
    expect(reads).toEqual(['ConfigMap/theirs'])
    expect((await kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'theirs', namespace: ns}))?.data).toEqual({a: 'kpi'})
    expect((await kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'ours', namespace: ns}))?.data).toEqual({a: '1'})
    await kube.delete({apiVersion: 'v1', kind: 'Namespace', name: ns})
  })

  it('a gate\'s wake-up comes with a change of the object (its watch), not with the state its last read already saw, nor with objects that are not kpi\'s', async () => {
    nameRunDir()
    const cm = (name: string, data: Record<string, string>, labels: Record<string, string> = {'app.kubernetes.io/managed-by': 'kpi'}) =>
      obj({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name, namespace: 'default', labels}, data})
    const seenRv = (await kube.apply(cm('kpi-wake', {ready: 'no'}))).metadata.resourceVersion
    const wakeups = watchWakeups(kube, 'app.kubernetes.io/managed-by=kpi')
    try {
      const w = wakeups.of({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-wake', namespace: 'default'})
      let woke = false
      const c = w.changed(w.seen(), seenRv)
      void c.promise.then(() => (woke = true))
      // the watch starts with the object as the read saw it, and another object changes meanwhile
      await kube.apply(cm('kpi-wake-other', {x: '1'}))
      await kube.apply(cm('not-kpis', {x: '1'}, {}))
      // the watch delivers the object as it was (its first event), which wakes no one
      for (let i = 0; i < 100 && w.seen() < 1; i++) await new Promise((r) => setTimeout(r, 50))
      await new Promise((r) => setTimeout(r, 300))
      expect(w.seen(), 'the watch delivered the object as it was').toBe(1)
      expect(woke).toBe(false)
      await kube.apply(cm('kpi-wake', {ready: 'yes'}))
      await c.promise
      expect(w.seen()).toBe(2)
      // a change that came before the next wait was asked for wakes it at once, unless that read saw it
      const now = (await kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-wake', namespace: 'default'}))!.metadata.resourceVersion
      let again = false
      const d = w.changed(1, now)
      void d.promise.then(() => (again = true))
      await new Promise((r) => setTimeout(r, 200))
      expect(again).toBe(false)
      d.cancel()
      await w.changed(1, seenRv).promise
    } finally {
      wakeups.close()
    }
    for (const n of ['kpi-wake', 'kpi-wake-other', 'not-kpis']) await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: n, namespace: 'default'})
    // one watch per kind whatever the namespaces, and a few at most: each holds a connection the polls share
    const opened: string[] = []
    const counting: Kube = {...kube, watch: (apiVersion, kind, o, on) => {
      opened.push(`${kind}${o.namespace ? ` in ${o.namespace}` : ''}`)
      return kube.watch(apiVersion, kind, o, on)
    }}
    const many = watchWakeups(counting, 'app.kubernetes.io/managed-by=kpi')
    try {
      for (const [kind, apiVersion] of [['ConfigMap', 'v1'], ['Secret', 'v1'], ['ServiceAccount', 'v1'], ['Service', 'v1'], ['Deployment', 'apps/v1'], ['Role', 'rbac.authorization.k8s.io/v1']]) {
        for (const namespace of ['a', 'b']) many.of({apiVersion: apiVersion!, kind: kind!, name: 'x', namespace}).changed(0, undefined).cancel()
      }
      expect(opened).toEqual(['ConfigMap', 'Secret', 'ServiceAccount', 'Service'])
    } finally {
      many.close()
    }
  })

  describe('users RBAC grants less than a cluster admin', () => {
    /** `user` bound to a role of these rules: in `namespace`, or cluster-wide */
    const grant = async (user: string, rules: Array<Record<string, string[]>>, namespace?: string) => {
      const name = `kpi-test-${user}${namespace ? `-${namespace}` : ''}`
      const kind = namespace ? 'Role' : 'ClusterRole'
      const meta = {name, ...(namespace ? {namespace} : {})}
      await kube.apply(obj({apiVersion: 'rbac.authorization.k8s.io/v1', kind, metadata: meta, rules}))
      await kube.apply(obj({
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: `${kind}Binding`, metadata: meta,
        roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind, name}, subjects: [{apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user}],
      }))
    }
    /** a Deployment no node can run (a node selector no KWOK node matches): its pod stays Pending, Unschedulable */
    const stranded = async (namespace: string, name: string): Promise<LiveObject> => {
      await kube.apply(obj({apiVersion: 'v1', kind: 'Namespace', metadata: {name: namespace}}))
      const labels = {app: name}
      const d = obj({
        apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name, namespace, labels: {'app.kubernetes.io/managed-by': 'kpi'}},
        spec: {replicas: 1, selector: {matchLabels: labels}, template: {metadata: {labels}, spec: {nodeSelector: {'node-role.kubernetes.io/platform': 'true'}, containers: [{name: 'c', image: 'example.test/x@sha256:' + 'b'.repeat(64)}]}}},
      })
      await kube.apply(d)
      for (let i = 0; i < 100; i++) {
        const pods = await kube.list('v1', 'Pod', {namespace, labelSelector: `app=${name}`})
        if (pods.some((p) => (p.status as {conditions?: Array<{type: string; reason?: string}>} | undefined)?.conditions?.some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'))) return d
        await new Promise((r) => setTimeout(r, 100))
      }
      throw new Error(`${namespace}/${name}: no Unschedulable pod after 10 s`)
    }
    const plannedRollout = (d: LiveObject) => ({stage: 'kpack' as const, object: d as unknown as KubeObject, check: 'rollout' as const, wave: 1})

    it('the rollout check of an unschedulable pod, for a user who may read pods but not nodes (a namespace admin), says rolling out, not forbidden', async () => {
      nameRunDir()
      const d = await stranded('kpi-ns-admin', 'stranded')
      await grant('ns-admin', [{apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list', 'watch']}, {apiGroups: [''], resources: ['pods', 'events'], verbs: ['get', 'list']}], 'kpi-ns-admin')
      const nsAdmin = await createKubeClient({kubeconfig: await unprivilegedKubeconfig('ns-admin')})
      try {
        await expect(nsAdmin.list('v1', 'Node')).rejects.toMatchObject({kind: 'auth'})
        const live = (await nsAdmin.get(refOf(d as unknown as KubeObject)))!
        const r = await CHECKS.rollout.judge(nsAdmin, live, refOf(d as unknown as KubeObject))
        expect(r.state).toBe('progressing')
      } finally {
        nsAdmin.close()
      }
    })

    it('a gate whose wait meets an error (the API refusing a read) ends every other wait of the gate with it: none polls on behind the error', async () => {
      nameRunDir()
      const a = await stranded('kpi-gate-a', 'waits')
      const b = await stranded('kpi-gate-b', 'refused')
      const deployments = [{apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list', 'watch', 'patch', 'create']}]
      // pods may be listed in kpi-gate-a only: the rollout check of kpi-gate-b's Deployment is refused
      await grant('gate-user', [...deployments, {apiGroups: [''], resources: ['pods'], verbs: ['list']}], 'kpi-gate-a')
      await grant('gate-user', deployments, 'kpi-gate-b')
      const user = await createKubeClient({kubeconfig: await unprivilegedKubeconfig('gate-user')})
      const reads = new Map<string, number>()
      const counting: Kube = {...user, get: (ref) => {
        reads.set(`${ref.namespace}/${ref.name}`, (reads.get(`${ref.namespace}/${ref.name}`) ?? 0) + 1)
        return user.get(ref)
      }}
      try {
        const err = await runStage({name: 'controllers', title: 'controllers', objects: [plannedRollout(a), plannedRollout(b)]}, {kube: counting, wait: 'ready', timeoutMs: 60_000, onEvent: () => {}}).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(KpiError)
        expect((err as KpiError).kind).toBe('auth')
        expect((err as KpiError).message).toMatch(/pods .*kpi-gate-b|kpi-gate-b.*pods/)
        // the operation goes on (an automatic rollback) while the other wait would poll on until
        // the stage's timeout, reporting on a stage that is over and holding the process open
        const before = reads.get('kpi-gate-a/waits') ?? 0
        await new Promise((r) => setTimeout(r, 400))
        expect((reads.get('kpi-gate-a/waits') ?? 0) - before).toBeLessThanOrEqual(1)
      } finally {
        user.close()
      }
    })

    it('preflight asks for what the gates read (a rollout\'s pods, a webhook Service\'s EndpointSlices): a role without them is refused before anything changes', async () => {
      nameRunDir()
      // a role that may write everything kpi writes, but not read pods or EndpointSlices
      await grant('platform-operator', [
        {apiGroups: [''], resources: ['namespaces', 'serviceaccounts', 'configmaps', 'secrets', 'services', 'events'], verbs: ['*']},
        {apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list']},
        ...['apps', 'rbac.authorization.k8s.io', 'apiextensions.k8s.io', 'admissionregistration.k8s.io', 'scheduling.k8s.io', 'coordination.k8s.io', 'kpack.io']
          .map((g) => ({apiGroups: [g], resources: ['*'], verbs: ['*']})),
      ])
      const operator = await createKubeClient({kubeconfig: await unprivilegedKubeconfig('platform-operator')})
      try {
        const v = await values()
        const err = await checkAccessAndImages({kube: operator, onEvent: () => {}, objects, registry: v.registry, clientOptions: {}, images: Promise.resolve(0)}, () => {}).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(KpiError)
        expect((err as KpiError).kind).toBe('auth')
        const message = (err as KpiError).message
        expect(message).toContain('list pods in namespace kpack')
        expect(message).toContain('list endpointslices.discovery.k8s.io in namespace kpack')
        expect(message).not.toMatch(/deployments|configmaps|customresourcedefinitions|leases/)
      } finally {
        operator.close()
      }
    })
  })

  it('a stage that rolls a Deployment judges its Service once only the new pods are behind it', async () => {
    nameRunDir()
    const labels = {app: 'probe'}
    const image = 'example.test/probe@sha256:' + 'c'.repeat(64)
    const deployment: KubeObject = {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'probe', namespace: 'wait-test', labels: {}, annotations: {}},
      spec: {replicas: 2, selector: {matchLabels: labels}, template: {metadata: {labels}, spec: {containers: [{name: 'c', image}]}}},
    }
    const service: KubeObject = {apiVersion: 'v1', kind: 'Service', metadata: {name: 'probe', namespace: 'wait-test', labels: {}, annotations: {}}, spec: {selector: labels, ports: [{port: 443, targetPort: 8443}]}}
    const [stage] = planStages([{stage: 'kpack', object: deployment}, {stage: 'kpack', object: service}]).filter((x) => x.objects.length)
    const events: ProgressEvent[] = []
    await runStage(stage!, {kube, wait: 'ready', timeoutMs: 60_000, onEvent: (x) => events.push(x)})
    // when the stage says ready, the Service's endpoints are the new pods, none of them leaving
    const slices = await kube.list('discovery.k8s.io/v1', 'EndpointSlice', {namespace: 'wait-test', labelSelector: 'kubernetes.io/service-name=probe'})
    const pods = (slices as unknown as Array<{endpoints?: Array<{targetRef?: {name: string}}>}>).flatMap((x) => x.endpoints ?? []).map((e) => e.targetRef!.name)
    expect(pods).toHaveLength(2)
    for (const name of pods) {
      const pod = await kube.get({apiVersion: 'v1', kind: 'Pod', name, namespace: 'wait-test'})
      expect(pod?.metadata.deletionTimestamp, `pod ${name}`).toBeUndefined()
      expect((pod!.spec as {containers: Array<{image: string}>}).containers[0]!.image).toBe(image)
    }
    const order = events.filter((x) => x.type === 'task' && x.status === 'done').map((x) => (x as {task: string}).task)
    expect(order.indexOf('Service wait-test/probe has ready endpoints')).toBeGreaterThan(order.indexOf('Deployment wait-test/probe rolled out'))
  })

  it('a stage that does not get ready in time fails naming the object, its last condition and its recent events', async () => {
    nameRunDir()
    const labels = {app: 'stuck'}
    const stuck: KubeObject = {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'stuck', namespace: 'wait-test', labels: {}, annotations: {}},
      spec: {replicas: 1, selector: {matchLabels: labels}, template: {metadata: {labels}, spec: {nodeSelector: {'kpi.dev/no-such-node': 'true'}, containers: [{name: 'c', image: 'example.test/stuck@sha256:' + 'b'.repeat(64)}]}}},
    }
    const [stage] = planStages([{stage: 'kpack', object: stuck}]).filter((s) => s.objects.length)
    const events: ProgressEvent[] = []
    const e = await rejection(runStage(stage!, {kube, wait: 'ready', timeoutMs: 6000, onEvent: (x) => events.push(x)}))
    expect(e.kind).toBe('timeout')
    expect(e.message).toMatch(/^stage controllers was not ready after 6\.0s: Deployment wait-test\/stuck: 0 of 1 updated replicas available; last condition Available=False/)
    expect(e.message).toMatch(/FailedScheduling: 0\/2 nodes are available: 2 node\(s\) didn't match Pod's node affinity\/selector/)
    expect(events.some((x) => x.type === 'task' && x.task === 'Deployment wait-test/stuck rolled out' && x.status === 'failed')).toBe(true)
  })

  it('a rollout whose pod asks more CPU than any node allocates is judged failed, unless an autoscaler took the pod on', async () => {
    nameRunDir()
    const labels = {app: 'greedy'}
    const ref = {apiVersion: 'apps/v1', kind: 'Deployment', name: 'greedy', namespace: 'wait-test'}
    await kube.apply({
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'greedy', namespace: 'wait-test'},
      spec: {replicas: 1, selector: {matchLabels: labels}, template: {metadata: {labels}, spec: {
        // the sidecar's request counts with the container's: 60 + 4 cores
        initContainers: [{name: 'side', image: 'example.test/side@sha256:' + 'c'.repeat(64), restartPolicy: 'Always', resources: {requests: {cpu: '4'}}}],
        containers: [{name: 'c', image: 'example.test/greedy@sha256:' + 'd'.repeat(64), resources: {requests: {cpu: '60', memory: '64Mi'}}}],
      }}},
    })
    const probe = deploymentProbe(kube, ref)
    // the real scheduler marks the pod Unschedulable; the judgement names the pod, the request and the largest node
    const r = await waitUntil(probe, {timeoutMs: 30_000, failAfterMs: 0})
    expect(r.outcome).toBe('failed')
    expect(r.readiness.message).toMatch(/^pod greedy-[a-z0-9]+-[a-z0-9]+ can never be scheduled: it requests cpu 64, more than any of the 2 nodes allocates \(at most \d+, on kwok-node-\d\)$/)
    // a cluster-autoscaler that will add a node for it says so on the pod: then the rollout is only progressing
    const [pod] = await kube.list('v1', 'Pod', {namespace: 'wait-test', labelSelector: 'app=greedy'})
    await kube.create({
      apiVersion: 'v1', kind: 'Event', metadata: {name: `${pod!.metadata.name}.scaleup`, namespace: 'wait-test'},
      involvedObject: {kind: 'Pod', apiVersion: 'v1', name: pod!.metadata.name, namespace: 'wait-test', uid: pod!.metadata.uid},
      reason: 'TriggeredScaleUp', message: 'pod triggered scale-up: [{big-nodes 0->1 (max: 3)}]', type: 'Normal',
      source: {component: 'cluster-autoscaler'}, firstTimestamp: new Date().toISOString(), lastTimestamp: new Date().toISOString(), count: 1,
    })
    const again = await probe()
    expect(again.readiness.state).toBe('progressing')
    expect(again.readiness.message).toMatch(/replicas/)
    await kube.delete(ref)
  })

  it('a request its caller stopped (a gate\'s watch, the gate over) waits out no outage: it ends at once, not after the 30 s grace', async () => {
    let sends = 0
    const unavailable: Requester = async <T>() => {
      sends++
      return {status: 503, body: {message: 'apiserver is shutting down'} as T, headers: {}}
    }
    const stop = new AbortController()
    const pending = riding(unavailable, 30_000)('GET', '/apis/apps/v1/deployments', {signal: stop.signal})
    setTimeout(() => stop.abort(), 300)
    await expect(pending).rejects.toThrow(/aborted/i)
    expect(sends).toBeGreaterThanOrEqual(1)
  }, 5000)

  it('a request made while the API server restarts waits for it to come back (an unreachable one fails at once, above)', async () => {
    nameRunDir()
    await kube.version()
    const restart = plane.cp.restartApiserver(3000)
    // the apiserver is stopped now and for three seconds more: refused connections, then its start
    await new Promise((r) => setTimeout(r, 500))
    const t = Date.now()
    const ns = await kube.get({apiVersion: 'v1', kind: 'Namespace', name: 'default'})
    expect(ns?.metadata.name).toBe('default')
    expect(Date.now() - t, 'it waited for the restart').toBeGreaterThan(1000)
    await restart
  })

  it('a write an admission webhook could not be called for (500 failed calling webhook) is sent again until it answers; a webhook down for good fails after the grace', async () => {
    nameRunDir()
    const ns = 'webhook-wait'
    await kube.apply({apiVersion: 'v1', kind: 'Namespace', metadata: {name: ns}})
    // a Service with no selector has no endpoints: the API server cannot call the webhook behind it
    await kube.apply({apiVersion: 'v1', kind: 'Service', metadata: {name: 'gone', namespace: ns}, spec: {ports: [{port: 443, targetPort: 8443}]}})
    const hook = {
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration', metadata: {name: 'kpi-test-gone'},
      webhooks: [{
        name: 'gone.kpi.test', admissionReviewVersions: ['v1'], sideEffects: 'None', failurePolicy: 'Fail', timeoutSeconds: 2,
        namespaceSelector: {matchLabels: {'kubernetes.io/metadata.name': ns}},
        rules: [{apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['configmaps']}],
        clientConfig: {service: {namespace: ns, name: 'gone', port: 443}},
      }],
    }
    await kube.apply(hook)
    const cm = (name: string) => ({apiVersion: 'v1', kind: 'ConfigMap', metadata: {name, namespace: ns}, data: {k: name}})
    // the API server takes the configuration from its cache a moment later: wait until a write meets it
    const {request: short, close} = await createRequester(loadKubeConfig({kubeconfig: plane.cp.kubeconfig}), 1500)
    try {
      for (let i = 0; ; i++) {
        const res = await short<{message?: string}>('POST', `/api/v1/namespaces/${ns}/configmaps`, {body: cm('probe'), query: {dryRun: 'All'}})
        if (res.status === 500 && /failed calling webhook/.test(res.body.message ?? '')) break
        expect(i, `the webhook never took effect: HTTP ${res.status}`).toBeLessThan(50)
        await new Promise((r) => setTimeout(r, 100))
      }
      // down for good: the answer comes once the grace is spent (sent at 0, 250 and 750 ms), not at once
      const t0 = Date.now()
      const res = await short<{message?: string}>('POST', `/api/v1/namespaces/${ns}/configmaps`, {body: cm('never')})
      expect(res.status).toBe(500)
      expect(Date.now() - t0).toBeGreaterThan(700)

      // back after two seconds (the configuration goes, as a rolled webhook answers again): both writes land
      const t = Date.now()
      const applied = kube.apply(cm('applied'))
      const created = kube.create(cm('created'))
      await new Promise((r) => setTimeout(r, 2000))
      await kube.delete(refOf(hook))
      expect((await applied).data).toEqual({k: 'applied'})
      expect((await created).data).toEqual({k: 'created'})
      expect(Date.now() - t).toBeGreaterThan(1900)
      expect(await kube.get(refOf(cm('never')))).toBeUndefined()
    } finally {
      close()
      await kube.delete(refOf(hook))
    }
  })

  it('the operation lease stays held when its own renewal landed with the answer lost, and is lost to another holder', async () => {
    nameRunDir()
    await kube.apply({apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'kpi-system'}})
    const ref = {apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: 'kpi-operation', namespace: 'kpi-system'}
    // renewed every 333 ms
    const held = await acquireLease(kube, 'upgrade', 1)
    const tick = () => new Promise((r) => setTimeout(r, 1000))
    try {
      // a renewal the API server wrote but whose answer never came back: the lease moved on, still naming this holder
      // (the holder renews every 333 ms: a write of the test that meets a renewal is made again)
      const overwrite = async (spec: Record<string, unknown>) => {
        for (let i = 0; ; i++) {
          const now = (await kube.get(ref))!
          try {
            return await kube.replace({...now, spec: {...(now.spec as object), ...spec}})
          } catch (e) {
            if (!(e instanceof KpiError && e.kind === 'conflict') || i >= 20) throw e
          }
        }
      }
      await overwrite({renewTime: new Date().toISOString().replace(/Z$/, '000Z')})
      await tick()
      expect(held.signal.aborted, 'its own write is not another operation').toBe(false)
      const live = (await kube.get(ref))!
      expect((live.spec as {holderIdentity: string}).holderIdentity).toBe(held.state.holder)
      // another holder took it: lost
      await overwrite({holderIdentity: 'kpi rollback (pid 1 on elsewhere)'})
      await tick()
      expect(held.signal.aborted).toBe(true)
      expect(String((held.signal.reason as Error).message)).toMatch(/^lost the operation lease kpi-system\/kpi-operation: kpi rollback \(pid 1 on elsewhere\) took it over$/)
    } finally {
      await held.release()
    }
  })
})
