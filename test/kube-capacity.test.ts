/**
 * Whether a pending pod can ever run: Kubernetes quantities, a pod's effective requests as the
 * scheduler sums them, and the comparison with every node's allocatable. The rollout gate on a
 * real control plane is in kube-client.test.ts and upgrade-failures.test.ts.
 */
import {describe, expect, it} from 'vitest'
import {autoscalerTookIt, neverFits, parseQuantity, podRequests} from '../src/kube/capacity.js'
import type {LiveObject} from '../src/kube/types.js'

const pod = (spec: Record<string, unknown>): LiveObject => ({apiVersion: 'v1', kind: 'Pod', metadata: {name: 'p', namespace: 'ns'}, spec})
const node = (name: string, allocatable: Record<string, string>): LiveObject => ({apiVersion: 'v1', kind: 'Node', metadata: {name}, status: {allocatable}})
const c = (requests: Record<string, string>, restartPolicy?: string) => ({name: 'x', image: 'i', resources: {requests}, ...(restartPolicy ? {restartPolicy} : {})})

describe('Kubernetes quantities', () => {
  it('reads decimal and binary suffixes, exponents, fractions and signs as the API server does', () => {
    const cases: Array<[string, number]> = [
      ['2', 2], ['500m', 0.5], ['0.25', 0.25], ['.5', 0.5], ['1.', 1], ['+3', 3], ['100n', 100e-9], ['7u', 7e-6],
      ['1k', 1e3], ['1M', 1e6], ['2G', 2e9], ['1T', 1e12], ['1P', 1e15], ['1E', 1e18],
      ['1Ki', 1024], ['64Mi', 64 * 2 ** 20], ['16Gi', 16 * 2 ** 30], ['1Ti', 2 ** 40], ['1Pi', 2 ** 50], ['1Ei', 2 ** 60],
      ['129e6', 129e6], ['1E3', 1000], ['5e-3', 0.005],
    ]
    for (const [q, v] of cases) expect(parseQuantity(q), q).toBeCloseTo(v, 12)
    expect(parseQuantity(4)).toBe(4)
    for (const bad of ['', 'm', '1.2.3', '1KiB', '1 Gi', 'one', '1e', '--1', '1mi']) expect(parseQuantity(bad), bad).toBeUndefined()
  })
})

describe('a pod\'s requests', () => {
  it('sums the containers and the sidecars, takes an init container with the sidecars before it where that is more, and adds the overhead', () => {
    const p = pod({
      initContainers: [c({cpu: '1'}, 'Always'), c({cpu: '3', memory: '1Gi'}), c({cpu: '500m'}, 'Always'), c({memory: '3Gi'})],
      containers: [c({cpu: '250m', memory: '512Mi'}), c({cpu: '250m', memory: '512Mi'})],
      overhead: {cpu: '100m'},
    })
    const r = podRequests(p)
    // running: 1 + 0.5 + 0.25 + 0.25 = 2 cores; the first init container ran with the first sidecar: 1 + 3 = 4
    expect(r.get('cpu')).toBeCloseTo(4.1, 9)
    // running: 1Gi; the last init container: 3Gi (sidecars request no memory)
    expect(r.get('memory')).toBe(3 * 2 ** 30)
    expect(podRequests(pod({containers: [{name: 'x', image: 'i'}]})).size).toBe(0)
  })
})

describe('a pod no node can run', () => {
  const nodes = [node('small', {cpu: '2', memory: '8Gi', pods: '110'}), node('large', {cpu: '8', memory: '4Gi', pods: '110'})]

  it('is named with the resource and the node that has the most of it', () => {
    expect(neverFits(pod({containers: [c({cpu: '64'})]}), nodes)).toBe('it requests cpu 64, more than any of the 2 nodes allocates (at most 8, on large)')
    expect(neverFits(pod({containers: [c({memory: '10Gi'})]}), nodes)).toBe('it requests memory 10Gi, more than any of the 2 nodes allocates (at most 8Gi, on small)')
    expect(neverFits(pod({containers: [c({'nvidia.com/gpu': '1'})]}), nodes)).toBe('it requests nvidia.com/gpu 1, and no node has any')
    // each node lacks something else: neither has both
    expect(neverFits(pod({containers: [c({cpu: '4', memory: '6Gi'})]}), nodes)).toBe('it requests cpu 4, memory 6Gi, and no node has all of it')
  })

  it('is not a pod one node fits, even a full one, nor any pod while the cluster has no nodes yet', () => {
    expect(neverFits(pod({containers: [c({cpu: '8', memory: '4Gi'})]}), nodes)).toBeUndefined()
    expect(neverFits(pod({containers: [c({cpu: '1500m'})]}), nodes)).toBeUndefined()
    expect(neverFits(pod({containers: [{name: 'x', image: 'i'}]}), nodes)).toBeUndefined()
    expect(neverFits(pod({containers: [c({cpu: '64'})]}), [])).toBeUndefined()
  })

  it('waits for an autoscaler that took the pod on (cluster-autoscaler, Karpenter), not for one that declined', () => {
    expect(autoscalerTookIt([{reason: 'FailedScheduling'}, {reason: 'TriggeredScaleUp'}])).toBe(true)
    expect(autoscalerTookIt([{reason: 'Nominated'}])).toBe(true)
    expect(autoscalerTookIt([{reason: 'FailedScheduling'}, {reason: 'NotTriggerScaleUp'}])).toBe(false)
  })
})
