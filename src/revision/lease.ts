/**
 * One operation at a time: a coordination.k8s.io Lease `kpi-operation` in kpi-system, taken
 * before an install, upgrade or rollback writes anything and renewed while it runs (as
 * controllers elect a leader). A second operation is refused, naming the holder and since when.
 *
 * A holder that dies never wedges the platform, which is Helm's most reported failure ("another
 * operation is in progress"): its lease stops being renewed and expires `leaseDurationSeconds`
 * after the last renewal; a holder on this same machine whose process is gone is known dead at
 * once (in its PID namespace). An expiry is judged by two clocks, the holder's and this one's,
 * so a lease that looks expired is watched for a third of its duration before it is taken: a live
 * holder renews in that time. Either way the next operation takes the lease over and says from whom.
 */
import {readlinkSync} from 'node:fs'
import {hostname} from 'node:os'
import {KpiError, isKpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import type {LiveObject} from '../kube/types.js'
import {REVISION_NAMESPACE} from '../namespaces.js'

export const LEASE_NAME = 'kpi-operation'
export const DEFAULT_LEASE_SECONDS = 60
const OPERATION_ANNOTATION = 'kpi.dev/operation'
/**
 * The holder's PID namespace (Linux: `pid:[4026531836]`): a host name is shared by processes that
 * cannot see each other's PIDs (containers with the host's UTS namespace, hostNetwork pods), so a
 * PID is judged gone only by a process in the holder's own namespace.
 */
const PID_NAMESPACE_ANNOTATION = 'kpi.dev/holder-pid-namespace'

let pidNamespace: {ns: string | undefined} | undefined
function ownPidNamespace(): string | undefined {
  if (!pidNamespace) {
    try {
      pidNamespace = {ns: readlinkSync('/proc/self/ns/pid')}
    } catch {
      // no PID namespaces outside Linux: one per host
      pidNamespace = {ns: process.platform === 'linux' ? undefined : 'host'}
    }
  }
  return pidNamespace.ns
}

export interface LeaseState {
  /** `kpi upgrade (pid 4242 on build-host)`; empty when released */
  holder: string
  operation: string
  /** when the holder took it (RFC 3339) */
  since: string
  renewedAt: string
  durationSeconds: number
  /** the holder stopped renewing: expired, or its process is gone */
  dead: boolean
  /** dead by the clock alone (its renewTime plus its duration is past) */
  expired?: boolean
  why?: string
}

export interface HeldLease {
  state: LeaseState
  /** the lease this one took over from a dead holder */
  tookOver?: LeaseState
  /** aborted when the lease is lost (someone else took it after a renewal failed) */
  signal: AbortSignal
  release(): Promise<void>
}

const ref = {apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: LEASE_NAME, namespace: REVISION_NAMESPACE}
const micro = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')

function parsePidHost(holder: string): {pid: number; host: string} | undefined {
  const m = /\(pid (\d+) on ([^)]+)\)$/.exec(holder)
  return m ? {pid: Number(m[1]), host: m[2]!} : undefined
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return false
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

export function leaseState(l: LiveObject, now = new Date()): LeaseState {
  const spec = (l.spec ?? {}) as {holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string}
  const holder = spec.holderIdentity ?? ''
  const durationSeconds = spec.leaseDurationSeconds ?? DEFAULT_LEASE_SECONDS
  const renewedAt = spec.renewTime ?? spec.acquireTime ?? ''
  const since = spec.acquireTime ?? renewedAt
  const base = {holder, operation: l.metadata.annotations?.[OPERATION_ANNOTATION] ?? '', since, renewedAt, durationSeconds}
  if (!holder) return {...base, dead: true, why: 'released'}
  const expiresAt = Date.parse(renewedAt) + durationSeconds * 1000
  if (!(expiresAt > now.getTime())) return {...base, dead: true, expired: true, why: `expired at ${new Date(expiresAt).toISOString()} (not renewed for ${durationSeconds}s)`}
  const ph = parsePidHost(holder)
  const ns = l.metadata.annotations?.[PID_NAMESPACE_ANNOTATION]
  if (ph && ph.host === hostname() && ns !== undefined && ns === ownPidNamespace() && processGone(ph.pid)) return {...base, dead: true, why: `process ${ph.pid} on ${ph.host} is gone`}
  return {...base, dead: false}
}

export async function readLease(kube: Kube): Promise<LeaseState | undefined> {
  if (!(await kube.resourceFor('coordination.k8s.io/v1', 'Lease'))) return undefined
  const l = await kube.get(ref).catch(() => undefined)
  return l ? leaseState(l) : undefined
}

function leaseObject(operation: string, holder: string, durationSeconds: number, acquired: Date, renewed: Date, resourceVersion?: string, transitions = 0): LiveObject {
  const pidNamespace = ownPidNamespace()
  return {
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
    metadata: {
      name: LEASE_NAME, namespace: REVISION_NAMESPACE, labels: {'app.kubernetes.io/managed-by': 'kpi'},
      annotations: {[OPERATION_ANNOTATION]: operation, ...(holder && pidNamespace ? {[PID_NAMESPACE_ANNOTATION]: pidNamespace} : {})},
      ...(resourceVersion ? {resourceVersion} : {}),
    },
    spec: {holderIdentity: holder, leaseDurationSeconds: durationSeconds, acquireTime: micro(acquired), renewTime: micro(renewed), leaseTransitions: transitions},
  }
}

export function busyError(s: LeaseState): KpiError {
  return new KpiError('conflict', `another kpi operation is running: ${s.operation || 'an operation'} by ${s.holder} since ${s.since} (lease ${REVISION_NAMESPACE}/${LEASE_NAME}, last renewed ${s.renewedAt})`, {
    hint: `wait for it to finish (kpi status shows it); if that process died, its lease expires ${s.durationSeconds}s after its last renewal and the next operation takes over`,
    details: {source: 'other', lease: s},
  })
}

/**
 * How long a lease that looks expired by this machine's clock is watched before it is taken over:
 * a holder renews every third of its duration, so a live one whose clock is behind (its renewals
 * dated in the past) shows itself by a renewal within this time. A second of slack.
 */
const expiryWatchMs = (durationSeconds: number): number => Math.min(durationSeconds * 1000, (durationSeconds * 1000) / 3 + 1000)

export interface AcquireOptions {
  /** told before the wait of expiryWatchMs, with the lease as it looked */
  onWatch?: (ms: number, s: LeaseState) => void
}

/**
 * Takes the lease for `operation` or throws a conflict naming the holder. The caller must have
 * made the namespace. Renewal runs every third of the duration until `release()`.
 */
export function acquireLease(kube: Kube, operation: string, durationSeconds = DEFAULT_LEASE_SECONDS, opts: AcquireOptions = {}): Promise<HeldLease> {
  return acquire(kube, operation, durationSeconds, opts, true)
}

/** `again`: a lease that changed while it was watched is judged afresh, once */
async function acquire(kube: Kube, operation: string, durationSeconds: number, opts: AcquireOptions, again: boolean): Promise<HeldLease> {
  const holder = `kpi ${operation} (pid ${process.pid} on ${hostname()})`
  let now = new Date()
  let live = await kube.get(ref)
  let tookOver: LeaseState | undefined
  try {
    if (!live) {
      live = await kube.create(leaseObject(operation, holder, durationSeconds, now, now))
    } else {
      const s = leaseState(live, now)
      if (!s.dead) throw busyError(s)
      if (s.holder && s.expired) {
        // the expiry is judged by this machine's clock and the holder's: a renewal while we watch
        // says the holder lives, whatever the clocks say
        const ms = expiryWatchMs(s.durationSeconds)
        opts.onWatch?.(ms, s)
        await new Promise((r) => setTimeout(r, ms))
        const seen = await kube.get(ref)
        if (seen?.metadata.resourceVersion !== live.metadata.resourceVersion) {
          const now2 = seen && leaseState(seen)
          if (now2?.holder === s.holder || !again) throw busyError({...(now2 ?? s), dead: false})
          // released, or taken by another meanwhile: judged afresh, once
          return acquire(kube, operation, durationSeconds, opts, false)
        }
        now = new Date()
      }
      if (s.holder) tookOver = s
      const transitions = Number((live.spec as {leaseTransitions?: number}).leaseTransitions ?? 0) + 1
      live = await kube.replace(leaseObject(operation, holder, durationSeconds, now, now, live.metadata.resourceVersion, transitions))
    }
  } catch (e) {
    // another operation created or took it between our read and write
    if (isKpiError(e) && e.kind === 'conflict' && !(e.details && 'lease' in e.details)) {
      const now2 = await kube.get(ref)
      if (now2) throw busyError(leaseState(now2))
    }
    throw e
  }
  const lost = new AbortController()
  let rv = live.metadata.resourceVersion
  let stopped = false
  let renewing: Promise<void> = Promise.resolve()
  const renew = async () => {
    try {
      const l = await kube.replace(leaseObject(operation, holder, durationSeconds, now, new Date(), rv, Number((live!.spec as {leaseTransitions?: number}).leaseTransitions ?? 0)))
      rv = l.metadata.resourceVersion
    } catch (e) {
      if (isKpiError(e) && e.kind === 'conflict') {
        // A conflict may be this holder's own earlier renewal, written by the API server with its
        // answer lost (a connection cut mid-request, an apiserver restarting): the lease then still
        // names this holder and only its resourceVersion moved on. Only another holder means lost.
        let current: LiveObject | undefined
        try {
          current = await kube.get(ref)
        } catch {
          return // cannot tell now: the next tick tries again
        }
        const taker = current ? leaseState(current).holder : ''
        if (taker === holder) {
          rv = current!.metadata.resourceVersion
          return
        }
        lost.abort(new KpiError('conflict', `lost the operation lease ${REVISION_NAMESPACE}/${LEASE_NAME}: ${taker ? `${taker} took it over` : 'another kpi operation took it over'}`, {hint: 'run kpi status to see where the platform stands'}))
      }
      // a network error: try again at the next tick; the lease lasts three ticks
    }
  }
  let renewalInFlight = false
  const timer = setInterval(() => {
    // one renewal at a time: one that outlasts a tick (the kube client waits out an API server
    // restart) would otherwise race the next with the same resourceVersion
    if (stopped || renewalInFlight) return
    renewalInFlight = true
    renewing = renew().finally(() => {
      renewalInFlight = false
    })
  }, Math.max(250, (durationSeconds * 1000) / 3))
  timer.unref()
  const state = leaseState(live)
  return {
    state,
    tookOver,
    signal: lost.signal,
    async release() {
      stopped = true
      clearInterval(timer)
      await renewing
      if (lost.signal.aborted) return
      // clear the holder (resourceVersion-guarded): the lease stays for the next operation
      await kube.replace({...leaseObject(operation, '', durationSeconds, now, new Date(), rv), spec: {leaseDurationSeconds: durationSeconds, leaseTransitions: 0}}).catch(() => {})
    },
  }
}
