/**
 * Pod readiness as a kubelet reports it, for the sandbox where KWOK starts pods Running but not
 * Ready (kwok-stages.ts): Ready once the pod's program accepts connections on its container ports
 * (a TCP readiness probe), or at once for a pod whose image stands for no program. Written through
 * the status subresource; Deployments, EndpointSlices and so webhook routing follow it.
 */
import type {CoreV1Api, V1Container, V1Pod} from '@kubernetes/client-node'
import {connect} from 'node:net'

export const isPodReady = (pod: V1Pod): boolean =>
  pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false

/** Sets the pod's Ready and ContainersReady conditions and its containers' ready flags. */
export async function setPodReady(core: CoreV1Api, pod: V1Pod, ready: boolean): Promise<void> {
  const name = pod.metadata?.name ?? ''
  const namespace = pod.metadata?.namespace ?? 'default'
  for (let attempt = 0; ; attempt++) {
    const live = await core.readNamespacedPodStatus({name, namespace})
    if (live.metadata?.uid !== pod.metadata?.uid || live.metadata?.deletionTimestamp) return
    if (isPodReady(live) === ready) return
    const status = live.status ?? {}
    const now = new Date()
    const want = ready ? 'True' : 'False'
    status.conditions = (status.conditions ?? []).map((c) =>
      c.type === 'Ready' || c.type === 'ContainersReady' ? {...c, status: want, lastTransitionTime: now} : c)
    status.containerStatuses = (status.containerStatuses ?? []).map((c) => ({...c, ready, started: true}))
    try {
      await core.replaceNamespacedPodStatus({name, namespace, body: {...live, status}})
      return
    } catch (e) {
      // another writer (KWOK, the runner's previous tick) changed it meanwhile: read again
      if ((e as {code?: number}).code !== 409 || attempt >= 4) throw e
    }
  }
}

/** The TCP ports a container declares. */
export const tcpPorts = (c: V1Container | undefined): number[] =>
  (c?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.containerPort)

/** Whether something accepts a TCP connection at ip:port (an address in a namespace the sandbox made). */
export function accepts(ip: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({host: ip, port, timeout: timeoutMs})
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.once('connect', () => done(true))
    s.once('timeout', () => done(false))
    s.once('error', () => done(false))
  })
}
