/**
 * Bounded retries with exponential backoff and jitter, for idempotent registry requests: on 429
 * (honouring Retry-After), on 5xx, and on connections reset under us.
 */
import {setTimeout as sleep} from 'node:timers/promises'

export interface RetryPolicy {
  /** extra attempts after the first */
  retries: number
  /** first backoff in ms; doubles each attempt */
  baseMs: number
  /** cap for one backoff (and for Retry-After) */
  maxMs: number
}

export const defaultRetryPolicy: RetryPolicy = {retries: 4, baseMs: 200, maxMs: 10_000}

export const retryableStatus = (status: number): boolean =>
  status === 429 || status === 500 || status === 502 || status === 503 || status === 504

const resetCodes = new Set([
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT',
])

/** The error codes along an error's cause chain (undici wraps the socket's error). */
export function errorCodes(e: unknown): string[] {
  const codes: string[] = []
  let cur: unknown = e
  for (let depth = 0; cur && depth < 5; depth++) {
    const err = cur as {code?: unknown; errors?: unknown[]; cause?: unknown}
    if (typeof err.code === 'string') codes.push(err.code)
    if (Array.isArray(err.errors)) for (const sub of err.errors) codes.push(...errorCodes(sub))
    cur = err.cause
  }
  return codes
}

/** A connection dropped mid-request: worth another attempt of an idempotent request. */
export const isConnectionReset = (e: unknown): boolean => errorCodes(e).some((c) => resetCodes.has(c))

const silenceCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

/** The registry stayed silent for the whole --registry-timeout (not a drop: a wait that already cost the timeout). */
export const isSilence = (e: unknown): boolean => errorCodes(e).some((c) => silenceCodes.has(c))

/** Milliseconds from a Retry-After header (seconds or an HTTP date), capped. */
export function retryAfterMs(header: string | string[] | undefined, maxMs: number): number | undefined {
  const v = Array.isArray(header) ? header[0] : header
  if (!v) return undefined
  const secs = Number(v)
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(v) - Date.now()
  if (!Number.isFinite(ms)) return undefined
  return Math.min(Math.max(ms, 0), maxMs)
}

export function backoffMs(attempt: number, policy: RetryPolicy): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** attempt)
  // "equal jitter": half fixed, half random, so concurrent clients spread out but never hammer
  return exp / 2 + Math.random() * (exp / 2)
}

interface StatusLike {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
}

/**
 * Run `send` until it returns a response that is not retryable or attempts run out; a retryable
 * response that is not the last one is passed to `discard` (to free its connection). Thrown
 * connection resets are retried too; other errors propagate at once.
 */
export async function withRetry<R extends StatusLike>(
  send: (attempt: number) => Promise<R>,
  policy: RetryPolicy,
  discard: (r: R) => Promise<void>,
): Promise<R> {
  let silent = 0
  for (let attempt = 0; ; attempt++) {
    const last = attempt >= policy.retries
    let res: R
    try {
      res = await send(attempt)
    } catch (e) {
      // A silent registry is tried once more, on a fresh connection (past a proxy or NAT that
      // dropped the old one), not `retries` times: each try waits the whole --registry-timeout, and
      // a stall must fail in about twice that, as the README says, not ten times.
      if (last || !isConnectionReset(e) || (isSilence(e) && silent++ > 0)) throw e
      await sleep(backoffMs(attempt, policy))
      continue
    }
    if (last || !retryableStatus(res.statusCode)) return res
    const after = res.statusCode === 429 || res.statusCode === 503 ? retryAfterMs(res.headers['retry-after'], policy.maxMs) : undefined
    await discard(res)
    await sleep(after ?? backoffMs(attempt, policy))
  }
}
