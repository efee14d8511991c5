/**
 * Waiting for readiness by polling: a probe reads the live state and judges it (readiness.ts).
 * Polls are the judgement, not watches: the same code path for every kind, nothing to lose when a
 * long-lived connection breaks behind a proxy. A watch only wakes a sleeping poll early when the
 * object changes (wake.ts), so a change is judged when it happens. The interval stays short while a
 * change is usually settling (FAST_MS), then grows slowly to a second (MAX_MS): a rollout is usually
 * done within a second, and every stage waits for its slowest object, so a late poll is time added
 * to the whole operation (measured with bench/upgrade.ts: 200 ms growing by half to 2 s left up to
 * half a second per stage on the table; 100 ms growing by a quarter still caught a 0.26 s rollout
 * at 0.38 s). A probe is one GET of one object: twenty a second per object for a second and a half
 * costs the API server nothing that matters.
 */
import type {Kube} from './client.js'
import {probeFor} from './checks.js'
import type {Readiness} from './readiness.js'
import type {ObjectWake} from './wake.js'
import type {LiveObject, ObjectRef} from './types.js'

export interface WaitOptions {
  timeoutMs: number
  /** a failed judgement ends the wait only once it has held this long (checks.ts: kpack retries) */
  failAfterMs?: number
  signal?: AbortSignal
  /** called with each new judgement (for progress), only when the message changes */
  onChange?: (r: Readiness) => void
  /** ends a sleep between polls early when the object changes (wake.ts) */
  wake?: ObjectWake
}

export type WaitOutcome =
  | {outcome: 'ready'; readiness: Readiness; live?: LiveObject}
  | {outcome: 'failed'; readiness: Readiness; live?: LiveObject}
  | {outcome: 'timeout'; readiness: Readiness; live?: LiveObject}

export type Probe = () => Promise<{readiness: Readiness; live?: LiveObject}>

/** Polls every FAST_MS for the first FAST_FOR_MS of a wait, then a quarter slower each time up to MAX_MS. */
const FAST_MS = 50
const FAST_FOR_MS = 1500
const MAX_MS = 1000

export async function waitUntil(probe: Probe, o: WaitOptions): Promise<WaitOutcome> {
  const started = Date.now()
  const deadline = started + o.timeoutMs
  let interval = FAST_MS
  let lastMsg = ''
  let failingSince: number | undefined
  for (;;) {
    o.signal?.throwIfAborted()
    const since = o.wake?.seen() ?? 0
    const r = await probe()
    if (r.readiness.message !== lastMsg) {
      lastMsg = r.readiness.message
      o.onChange?.(r.readiness)
    }
    if (r.readiness.state === 'ready') return {outcome: 'ready', ...r}
    if (r.readiness.state === 'failed') {
      failingSince ??= Date.now()
      if (Date.now() - failingSince >= (o.failAfterMs ?? 0)) return {outcome: 'failed', ...r}
    } else {
      failingSince = undefined
    }
    const left = deadline - Date.now()
    if (left <= 0) return {outcome: failingSince === undefined ? 'timeout' : 'failed', ...r}
    await sleep(Math.min(interval, left), o.signal, o.wake?.changed(since, r.live?.metadata.resourceVersion))
    if (Date.now() - started >= FAST_FOR_MS) interval = Math.min(MAX_MS, Math.round(interval * 1.25))
  }
}

function sleep(ms: number, signal?: AbortSignal, wake?: {promise: Promise<void>; cancel(): void}): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(t)
      wake?.cancel()
      signal?.removeEventListener('abort', onAbort)
    }
    const t = setTimeout(() => {
      done()
      resolve()
    }, ms)
    const onAbort = () => {
      done()
      reject(signal!.reason)
    }
    signal?.addEventListener('abort', onAbort, {once: true})
    void wake?.promise.then(() => {
      done()
      resolve()
    })
  })
}

// ---- probes for the checks kpi knows: the table in checks.ts ----

export const crdProbe = (kube: Kube, ref: ObjectRef): Probe => probeFor(kube, 'established', ref)
export const deploymentProbe = (kube: Kube, ref: ObjectRef): Probe => probeFor(kube, 'rollout', ref)
export const kpackProbe = (kube: Kube, ref: ObjectRef): Probe => probeFor(kube, 'kpack-ready', ref)
/** A Service is ready when its EndpointSlices list a ready endpoint: something will answer it. */
export const endpointsProbe = (kube: Kube, ref: ObjectRef): Probe => probeFor(kube, 'endpoints', ref)
