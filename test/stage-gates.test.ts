/**
 * A stage's gates (stage.ts) against an in-memory API: what happens to the other waits of a gate
 * when one of them cannot go on.
 */
import {describe, expect, it} from 'vitest'
import {planStages, type PlannedStage} from '../src/apply/plan.js'
import {runStage} from '../src/apply/stage.js'
import {KpiError} from '../src/errors.js'
import type {Kube} from '../src/kube/client.js'
import type {LiveObject, ObjectRef} from '../src/kube/types.js'
import {endpointsReadiness} from '../src/kube/readiness.js'
import {CHECKS} from '../src/kube/checks.js'
import {checkAccessAndImages} from '../src/apply/preflight.js'
import type {ResourceAttributes} from '../src/kube/client.js'
import {renderPlatform} from '../src/render/render.js'
import {lock17, values} from './fixtures/render/helpers.js'

const deployment = (name: string): LiveObject => ({
  apiVersion: 'apps/v1', kind: 'Deployment',
  metadata: {name, namespace: 'kpack', generation: 1, uid: `uid-${name}`, labels: {'app.kubernetes.io/managed-by': 'kpi'}},
  spec: {replicas: 1, selector: {matchLabels: {app: name}}, template: {metadata: {labels: {app: name}}, spec: {containers: [{name: 'c', image: 'x'}]}}},
  // rolling out: observed, not updated yet
  status: {observedGeneration: 1, replicas: 1, updatedReplicas: 0, availableReplicas: 0},
})

/** Objects by `kind/name`; `gets` counts the reads of each. */
function fakeKube(objects: LiveObject[], o: {listPods?: (selector: string | undefined) => LiveObject[]} = {}) {
  const byKey = new Map(objects.map((x) => [`${x.kind}/${x.metadata.name}`, x]))
  const gets = new Map<string, number>()
  const kube = {
    server: 'https://fake', context: 'fake', tlsUnverified: false,
    resourceFor: async (_v: string, kind: string) => ({name: `${kind.toLowerCase()}s`, namespaced: true, kind, verbs: []}),
    get: async (ref: ObjectRef) => {
      const k = `${ref.kind}/${ref.name}`
      gets.set(k, (gets.get(k) ?? 0) + 1)
      return structuredClone(byKey.get(k))
    },
    apply: async (obj: LiveObject) => ({...structuredClone(byKey.get(`${obj.kind}/${obj.metadata.name}`) ?? obj)}),
    list: async (_v: string, kind: string, l: {labelSelector?: string} = {}) => (kind === 'Pod' ? o.listPods?.(l.labelSelector) ?? [] : []),
    events: async () => [],
  } as unknown as Kube
  return {kube, gets}
}

const stageOf = (objs: LiveObject[]): PlannedStage => ({
  name: 'controllers', title: 'kpack controller and webhook',
  objects: objs.map((object) => ({stage: 'kpack', object, check: 'rollout', wave: 1})),
})

describe('a stage gate', () => {
  it('stops every other wait of the gate when one wait fails with an error (the API refusing a read): none polls on behind the error', async () => {
    const a = deployment('kpack-webhook')
    const b = deployment('kpack-controller')
    const refused = new KpiError('network', 'list Pod in kpack: connection refused')
    const {kube, gets} = fakeKube([a, b], {
      listPods: (selector) => {
        if (selector?.includes('kpack-webhook')) throw refused
        return []
      },
    })
    const err = await runStage(stageOf([a, b]), {kube, wait: 'ready', timeoutMs: 4000, onEvent: () => {}}).catch((e: unknown) => e)
    expect(err).toBe(refused)
    // the operation goes on (an automatic rollback) while the stage's other wait would poll on
    // until the stage's timeout, reporting on a stage that is over and holding the process open
    const before = gets.get('Deployment/kpack-controller') ?? 0
    await new Promise((r) => setTimeout(r, 400))
    expect((gets.get('Deployment/kpack-controller') ?? 0) - before).toBeLessThanOrEqual(1)
  })
})

describe('the check of a Service', () => {
  it('is not endpoints when every Deployment behind it is scaled to 0 (values replicas: 0): no endpoint will ever be ready, the gate would time out', async () => {
    const v = await values()
    v.certInjection.replicas = 0
    const {objects} = renderPlatform(await lock17(), v)
    const planned = planStages(objects).flatMap((s) => s.objects)
    const of = (kind: string, name: string) => planned.find((o) => o.object.kind === kind && o.object.metadata.name === name)!
    expect((of('Deployment', 'cert-injection-webhook').object.spec as {replicas: number}).replicas).toBe(0)
    // what the endpoints check says of it for ever: no pod, no endpoint
    expect(endpointsReadiness([]).state).toBe('progressing')
    expect(of('Service', 'cert-injection-webhook').check).toBe('applied')
    // the Deployment is still waited for (its old pods gone), and a Service with pods still is judged by its endpoints
    expect(of('Deployment', 'cert-injection-webhook').check).toBe('rollout')
    expect(of('Service', 'kpack-webhook').check).toBe('endpoints')
  })
})

describe('the rollout check', () => {
  it('judges a Deployment with an unschedulable pod as rolling out when nodes cannot be read (a namespace admin), not as a forbidden error', async () => {
    const d = deployment('kpack-controller')
    const pod: LiveObject = {
      apiVersion: 'v1', kind: 'Pod', metadata: {name: 'kpack-controller-1', namespace: 'kpack', uid: 'p1'},
      spec: {containers: [{name: 'c', resources: {requests: {cpu: '100m'}}}], nodeSelector: {'node-role.kubernetes.io/platform': 'true'}},
      status: {phase: 'Pending', conditions: [{type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 node(s) didn\'t match Pod\'s node affinity/selector.'}]},
    }
    const {kube} = fakeKube([d], {listPods: () => [pod]})
    const list = kube.list.bind(kube)
    kube.list = async (apiVersion, kind, o) => {
      // as the API server answers a user RBAC lets read pods but not nodes (node-capacity.ts: no check, no error)
      if (kind === 'Node') throw new KpiError('auth', 'list Node: forbidden: User "ns-admin" cannot list resource "nodes" in API group "" at the cluster scope')
      return list(apiVersion, kind, o)
    }
    const r = await CHECKS.rollout.judge(kube, d, {apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, namespace: 'kpack'})
    expect(r).toMatchObject({state: 'progressing', message: '0 of 1 replicas updated'})
  })
})

describe('preflight permissions', () => {
  it('include what the gates read to judge readiness (a rollout\'s pods, a webhook Service\'s EndpointSlices and pods): without them the first gate fails after objects changed', async () => {
    const v = await values()
    const {objects} = renderPlatform(await lock17(), v)
    const {kube} = fakeKube([])
    const asked: ResourceAttributes[] = []
    // a role that grants everything kpi writes, but not reading pods or EndpointSlices
    kube.canI = async (a) => {
      asked.push(a)
      return {allowed: a.verb !== '*' && !(a.resource === 'pods' || a.resource === 'endpointslices')}
    }
    const err = await checkAccessAndImages({kube, onEvent: () => {}, objects, registry: v.registry, clientOptions: {}, images: Promise.resolve(0)}, () => {}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).kind).toBe('auth')
    expect((err as KpiError).message).toContain('list pods in namespace kpack')
    expect((err as KpiError).message).toContain('list endpointslices.discovery.k8s.io in namespace kpack')
  })
})
