import {ApiextensionsV1Api, AppsV1Api, CoreV1Api, CustomObjectsApi, VersionApi, type V1Pod} from '@kubernetes/client-node'
import {describe, expect, it} from 'vitest'
import {useControlPlane} from './helpers/controlplane.js'
import {waitFor} from '../src/sandbox/procs.js'
import {toolVersions} from '../src/sandbox/tools.js'

const plane = useControlPlane('controlplane')
const nameRunDir = () => plane.nameRunDir()

const statusOf = (e: unknown): number | undefined => (e as {code?: number}).code

describe('sandbox control plane', () => {
  it('reports the pinned Kubernetes version, with default service account and KWOK nodes in place', async () => {
    nameRunDir()
    const v = await plane.kc.makeApiClient(VersionApi).getCode()
    expect(v.gitVersion).toBe(toolVersions().KUBERNETES_VERSION)
    expect(v.major).toBe('1')
    const core = plane.kc.makeApiClient(CoreV1Api)
    const nodes = await core.listNode()
    expect(nodes.items.map((n) => n.metadata?.name).sort()).toEqual([...plane.cp.nodes].sort())
    expect(nodes.items[0]?.status?.allocatable?.cpu).toBe('4')
    const sa = await core.readNamespacedServiceAccount({name: 'default', namespace: 'default'})
    expect(sa.metadata?.name).toBe('default')
  })

  it('runs a 2-replica Deployment to Available through the controller-manager, scheduler and KWOK', async () => {
    nameRunDir()
    const apps = plane.kc.makeApiClient(AppsV1Api)
    const labels = {app: 'web'}
    await apps.createNamespacedDeployment({namespace: 'default', body: {
      metadata: {name: 'web'},
      spec: {
        replicas: 2,
        selector: {matchLabels: labels},
        template: {metadata: {labels}, spec: {containers: [{name: 'web', image: 'registry.invalid/web:1', resources: {requests: {cpu: '100m'}}}]}},
      },
    }})
    const d = await waitFor(async () => {
      const d = await apps.readNamespacedDeployment({name: 'web', namespace: 'default'})
      return d.status?.availableReplicas === 2 ? d : undefined
    }, {what: 'deployment web available', timeoutMs: 90_000, intervalMs: 500})
    expect(d.status?.availableReplicas).toBe(2)
    const pods = await plane.kc.makeApiClient(CoreV1Api).listNamespacedPod({namespace: 'default', labelSelector: 'app=web'})
    expect(pods.items).toHaveLength(2)
    for (const p of pods.items) {
      expect(plane.cp.nodes).toContain(p.spec?.nodeName)
      expect(p.status?.phase).toBe('Running')
    }
  })

  it('leaves a pod that asks more CPU than any node has Pending, with the scheduler saying why', async () => {
    nameRunDir()
    const core = plane.kc.makeApiClient(CoreV1Api)
    await core.createNamespacedPod({namespace: 'default', body: {
      metadata: {name: 'too-big'},
      spec: {containers: [{name: 'c', image: 'registry.invalid/big:1', resources: {requests: {cpu: '64'}}}]},
    }})
    const cond = await waitFor(async () => {
      const p: V1Pod = await core.readNamespacedPod({name: 'too-big', namespace: 'default'})
      return p.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False')
    }, {what: 'pod too-big marked unschedulable', timeoutMs: 60_000, intervalMs: 500})
    expect(cond.reason).toBe('Unschedulable')
    expect(cond.message).toMatch(/Insufficient cpu/)
    const p = await core.readNamespacedPod({name: 'too-big', namespace: 'default'})
    expect(p.status?.phase).toBe('Pending')
    expect(p.spec?.nodeName).toBeUndefined()
  })

  it('establishes a CRD and enforces its structural schema on custom resources', async () => {
    nameRunDir()
    const ext = plane.kc.makeApiClient(ApiextensionsV1Api)
    await ext.createCustomResourceDefinition({body: {
      metadata: {name: 'widgets.example.kpi.dev'},
      spec: {
        group: 'example.kpi.dev',
        scope: 'Namespaced',
        names: {plural: 'widgets', singular: 'widget', kind: 'Widget'},
        versions: [{
          name: 'v1', served: true, storage: true,
          schema: {openAPIV3Schema: {
            type: 'object',
            properties: {spec: {
              type: 'object',
              required: ['size'],
              properties: {size: {type: 'integer', minimum: 1, maximum: 10}},
            }},
          }},
        }],
      },
    }})
    await waitFor(async () => {
      const crd = await ext.readCustomResourceDefinition({name: 'widgets.example.kpi.dev'})
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')
    }, {what: 'CRD widgets established', timeoutMs: 30_000})

    const custom = plane.kc.makeApiClient(CustomObjectsApi)
    const widget = (name: string, spec: unknown) => ({
      group: 'example.kpi.dev', version: 'v1', namespace: 'default', plural: 'widgets',
      body: {apiVersion: 'example.kpi.dev/v1', kind: 'Widget', metadata: {name}, spec},
    })
    // The CRD's discovery can lag Established by a moment: retry the valid create until it lands.
    const ok = await waitFor(async () => custom.createNamespacedCustomObject(widget('good', {size: 3})) as Promise<{metadata: {name: string}}>,
      {what: 'creating a valid Widget', timeoutMs: 30_000})
    expect(ok.metadata.name).toBe('good')

    let refused: unknown
    try {
      await custom.createNamespacedCustomObject(widget('bad', {size: 'huge'}))
    } catch (e) {
      refused = e
    }
    expect(statusOf(refused)).toBe(422)
    expect(String((refused as {body?: unknown}).body)).toMatch(/spec\.size/)
    await expect(custom.createNamespacedCustomObject(widget('missing', {}))).rejects.toMatchObject({code: 422})
  })
})
