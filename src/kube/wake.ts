/**
 * Wake-ups for the polls of a gate (wait.ts): a poll that finds an object not ready yet sleeps
 * until its next poll or until the API server says the object changed, whichever comes first.
 * A change is told by a watch of the object's kind, cluster-wide and label-selected to kpi's
 * objects: one per kind (at most MAX_WATCHES, each holding a connection of the client's pool:
 * a stage with teams' Builders in twenty namespaces must not take every connection the polls
 * need), opened only once an object of it was found not ready. A user who may not watch a kind
 * cluster-wide (a namespace admin) is refused it: polls alone, as before.
 * Polls stay the judgement and the fallback: a watch that is refused (no `watch` permission),
 * ends or breaks only means waiting for the next poll. Measured on the benchmark sandbox, polls
 * every 50 ms noticed a CRD Established or a rollout done 25-60 ms after it happened.
 */
import type {Kube} from './client.js'
import type {ObjectRef} from './types.js'

/** One object's wake-ups, as waitUntil uses them. */
export interface ObjectWake {
  /** changes seen so far: taken before a read */
  seen(): number
  /** resolves at the first change after the `since`-th whose resourceVersion is not `rv` (what the read saw); cancel() drops it */
  changed(since: number, rv: string | undefined): {promise: Promise<void>; cancel(): void}
}

export interface Wakeups {
  of(ref: ObjectRef): ObjectWake
  close(): void
}

interface Waiter {
  since: number
  rv: string | undefined
  resolve: () => void
}

const MAX_WATCHES = 4

export function watchWakeups(kube: Kube, labelSelector: string): Wakeups {
  const watches = new Map<string, () => void>()
  // per object: the resourceVersion of each change seen, and who waits
  const changes = new Map<string, string[]>()
  const waiters = new Map<string, Set<Waiter>>()
  let closed = false
  const keyOf = (r: {apiVersion: string; kind: string; namespace?: string; name: string}) => `${r.apiVersion}/${r.kind}/${r.namespace ?? ''}/${r.name}`
  const wakes = (list: string[], w: Waiter) => list.slice(w.since).some((rv) => rv !== w.rv)

  const open = (ref: ObjectRef) => {
    const group = `${ref.apiVersion}/${ref.kind}`
    if (closed || watches.has(group) || watches.size >= MAX_WATCHES) return
    try {
      watches.set(group, kube.watch(ref.apiVersion, ref.kind, {labelSelector}, (obj) => {
        const key = keyOf({apiVersion: ref.apiVersion, kind: ref.kind, namespace: obj.metadata.namespace, name: obj.metadata.name})
        const list = changes.get(key) ?? []
        list.push(obj.metadata.resourceVersion ?? '')
        changes.set(key, list)
        for (const w of waiters.get(key) ?? []) {
          if (!wakes(list, w)) continue
          waiters.get(key)!.delete(w)
          w.resolve()
        }
      }))
    } catch {
      // a client that cannot watch: polls alone
      watches.set(group, () => {})
    }
  }

  return {
    of: (ref) => {
      const key = keyOf(ref)
      return {
        seen: () => changes.get(key)?.length ?? 0,
        changed: (since, rv) => {
          open(ref)
          let w!: Waiter
          const promise = new Promise<void>((resolve) => (w = {since, rv, resolve}))
          if (wakes(changes.get(key) ?? [], w)) w.resolve()
          else {
            const set = waiters.get(key) ?? new Set()
            set.add(w)
            waiters.set(key, set)
          }
          return {promise, cancel: () => waiters.get(key)?.delete(w)}
        },
      }
    },
    close: () => {
      closed = true
      for (const stop of watches.values()) stop()
      waiters.clear()
    },
  }
}
