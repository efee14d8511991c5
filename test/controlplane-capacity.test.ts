/**
 * The sandbox control plane honours the node sizes it is given: KWOK nodes report the capacity
 * startControlPlane was asked for, and the real scheduler fills them up to their pod limit and
 * no further. Install preflight and the demo rely on small nodes behaving like small nodes.
 */
import {AppsV1Api, CoreV1Api, type V1Pod} from '@kubernetes/client-node'
import {describe, expect, it} from 'vitest'
import type {FakeNode} from '../src/sandbox/controlplane.js'
import {useControlPlane} from './helpers/controlplane.js'
import {waitFor} from '../src/sandbox/procs.js'

const NODES: FakeNode[] = [
  {name: 'small-0', cpu: '1', memory: '2Gi', pods: 3},
  {name: 'small-1', cpu: '1', memory: '2Gi', pods: 3},
]

const plane = useControlPlane('cp-capacity', {nodes: NODES})
const nameRunDir = () => plane.nameRunDir()

describe('sandbox control plane with small nodes', () => {
  it('reports the capacity each node was created with', async () => {
    nameRunDir()
    expect([...plane.cp.nodes].sort()).toEqual(['small-0', 'small-1'])
    const nodes = (await plane.kc.makeApiClient(CoreV1Api).listNode()).items
    expect(nodes.map((n) => n.metadata?.name).sort()).toEqual(['small-0', 'small-1'])
    for (const n of nodes) {
      expect(n.status?.allocatable).toMatchObject({cpu: '1', memory: '2Gi', pods: '3'})
      expect(n.status?.capacity).toMatchObject({cpu: '1', memory: '2Gi', pods: '3'})
    }
  })

  it('schedules 6 of 8 replicas on two 3-pod nodes and leaves 2 Pending for "Too many pods"', async () => {
    nameRunDir()
    const apps = plane.kc.makeApiClient(AppsV1Api)
    const core = plane.kc.makeApiClient(CoreV1Api)
    const labels = {app: 'crowd'}
    // no requests at all: only the pod count can stop the scheduler
    await apps.createNamespacedDeployment({namespace: 'default', body: {
      metadata: {name: 'crowd'},
      spec: {
        replicas: 8,
        selector: {matchLabels: labels},
        template: {metadata: {labels}, spec: {containers: [{name: 'c', image: 'registry.invalid/crowd:1'}]}},
      },
    }})
    const list = async (): Promise<V1Pod[]> => (await core.listNamespacedPod({namespace: 'default', labelSelector: 'app=crowd'})).items
    const unschedulable = (p: V1Pod) => p.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False')
    const pods = await waitFor(async () => {
      const ps = await list()
      const bound = ps.filter((p) => p.spec?.nodeName)
      const refused = ps.filter((p) => !p.spec?.nodeName && unschedulable(p))
      return ps.length === 8 && bound.length === 6 && refused.length === 2 ? ps : undefined
    }, {what: '6 crowd pods bound and 2 unschedulable', timeoutMs: 90_000, intervalMs: 500})

    const bound = pods.filter((p) => p.spec?.nodeName)
    const perNode = new Map<string, number>()
    for (const p of bound) perNode.set(p.spec!.nodeName!, (perNode.get(p.spec!.nodeName!) ?? 0) + 1)
    expect(Object.fromEntries(perNode)).toEqual({'small-0': 3, 'small-1': 3})

    for (const p of pods.filter((x) => !x.spec?.nodeName)) {
      expect(p.status?.phase).toBe('Pending')
      const cond = unschedulable(p)!
      expect(cond.reason).toBe('Unschedulable')
      expect(cond.message).toMatch(/Too many pods/)
    }

    // and it stays that way: a later look still has no seventh pod bound
    await new Promise((r) => setTimeout(r, 3000))
    const later = await list()
    expect(later.filter((p) => p.spec?.nodeName)).toHaveLength(6)
    expect(later).toHaveLength(8)
  })
})
