/**
 * What a rollback writes whole (a kpack resource's spec, by PUT: changeset.ts decide()) must stay
 * kpi's to change by server-side apply afterwards, on a real control plane: its field ownership
 * is what decides whether the next upgrade can remove a field.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import type {PlannedStage} from '../src/apply/plan.js'
import {runStage} from '../src/apply/stage.js'
import {isKpackResource} from '../src/kube/checks.js'
import {createKubeClient, type Kube} from '../src/kube/client.js'
import {crdProbe, waitUntil} from '../src/kube/wait.js'
import {refOf} from '../src/kube/types.js'
import {renderPlatform} from '../src/render/render.js'
import type {KubeObject} from '../src/render/types.js'
import {useControlPlane} from './helpers/controlplane.js'
import {lock17, values} from './fixtures/render/helpers.js'

const plane = useControlPlane('rollback-fields')
let kube: Kube

const store = (spec: Record<string, unknown>): KubeObject => ({
  apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStore',
  metadata: {name: 'kpi-fields', labels: {'app.kubernetes.io/managed-by': 'kpi'}},
  spec,
})
const stage = (o: KubeObject): PlannedStage => ({name: 'platform', title: 'platform', objects: [{stage: 'stores', object: o, check: 'kpack-ready', wave: 1}]})
const run = (o: KubeObject, rollback = false) =>
  runStage(stage(o), {kube, wait: 'applied', timeoutMs: 30_000, onEvent: () => {}, ...(rollback ? {replaceSpec: isKpackResource} : {})})

describe('a kpack resource a rollback wrote whole', {timeout: 180_000}, () => {
  beforeAll(async () => {
    kube = await createKubeClient({kubeconfig: plane.cp.kubeconfig})
    const crd = renderPlatform(await lock17(), await values()).objects.find((o) => o.object.kind === 'CustomResourceDefinition' && o.object.metadata.name === 'clusterstores.kpack.io')!.object
    await kube.apply(crd)
    const w = await waitUntil(crdProbe(kube, refOf(crd)), {timeoutMs: 30_000})
    expect(w.outcome).toBe('ready')
  })
  afterAll(() => kube?.close())

  it('loses a field the next upgrade no longer sets, as any applied field does', async () => {
    plane.nameRunDir()
    const sa = (name: string) => ({serviceAccountRef: {name, namespace: 'kpack'}})
    // revision 1, then an upgrade (revision 2) that changes the field; it fails and is rolled back to 1
    await run(store({sources: [{image: 'reg.example/bp/a@sha256:' + 'a'.repeat(64)}], ...sa('one')}))
    await run(store({sources: [{image: 'reg.example/bp/b@sha256:' + 'b'.repeat(64)}], ...sa('two')}))
    const back = await run(store({sources: [{image: 'reg.example/bp/a@sha256:' + 'a'.repeat(64)}], ...sa('one')}), true)
    expect(back.changes[0]!.action).toBe('update')
    // the next upgrade no longer sets the service account
    await run(store({sources: [{image: 'reg.example/bp/c@sha256:' + 'c'.repeat(64)}]}))
    const live = await kube.get({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStore', name: 'kpi-fields'})
    expect((live!.spec as Record<string, unknown>).sources).toEqual([{image: 'reg.example/bp/c@sha256:' + 'c'.repeat(64)}])
    expect(live!.spec).not.toHaveProperty('serviceAccountRef')
  })
})
