/**
 * A kubelet keeps a deleted pod in the API (terminating, its endpoints marked so) until its
 * containers are dead. KWOK removes a deleted pod at once, so a pod whose program the runner runs
 * would vanish while its process still answers: kpi would find a webhook rollout done while the
 * apiserver's kept-alive connection still reached the old webhook. The runner therefore holds each
 * pod it runs with a finalizer, and lets it go once the process is stopped.
 */
import type {CoreV1Api, V1Pod} from '@kubernetes/client-node'

export const POD_HOLD = 'sandbox.kpi.dev/process'

export const isHeld = (pod: V1Pod): boolean => pod.metadata?.finalizers?.includes(POD_HOLD) ?? false

const ref = (pod: V1Pod) => ({name: pod.metadata?.name ?? '', namespace: pod.metadata?.namespace ?? 'default'})

/**
 * Adds the hold; false when the pod is gone, was replaced under its name, or is being deleted (the
 * apiserver adds no finalizer then): no process should start for it.
 */
export async function holdPod(core: CoreV1Api, pod: V1Pod): Promise<boolean> {
  if (isHeld(pod)) return true
  const body = [
    // a pod recreated under the same name must not be held for the old one
    {op: 'test', path: '/metadata/uid', value: pod.metadata?.uid},
    pod.metadata?.finalizers ? {op: 'add', path: '/metadata/finalizers/-', value: POD_HOLD} : {op: 'add', path: '/metadata/finalizers', value: [POD_HOLD]},
  ]
  try {
    pod.metadata = (await core.patchNamespacedPod({...ref(pod), body})).metadata
    return true
  } catch (e) {
    const code = (e as {code?: number}).code
    if (code === 404 || code === 422 || code === 409) return false
    throw e
  }
}

/** Removes the hold from `pod` (as just listed), so it goes from the API; a pod already gone is fine. */
export async function releasePod(core: CoreV1Api, pod: V1Pod): Promise<void> {
  let live: V1Pod | undefined = pod
  for (let attempt = 0; live; attempt++) {
    const at = live.metadata?.finalizers?.indexOf(POD_HOLD) ?? -1
    if (at < 0 || live.metadata?.uid !== pod.metadata?.uid) return
    try {
      await core.patchNamespacedPod({...ref(pod), body: [
        {op: 'test', path: `/metadata/finalizers/${at}`, value: POD_HOLD},
        {op: 'remove', path: `/metadata/finalizers/${at}`},
      ]})
      return
    } catch (e) {
      const code = (e as {code?: number}).code
      if (code === 404) return
      // its finalizers changed since it was read: read it again
      if ((code !== 422 && code !== 409) || attempt >= 4) throw e
    }
    live = await core.readNamespacedPod(ref(pod)).catch((e: unknown) => {
      if ((e as {code?: number}).code === 404) return undefined
      throw e
    })
  }
}
