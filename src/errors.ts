/**
 * Typed errors: core code throws these, commands turn them into one clear line and an exit code.
 * `hint` says what the user should do next; it is printed after the message.
 */
export type ErrorKind =
  | 'usage'        // bad flags or arguments
  | 'input'        // a file the user gave is missing or invalid
  | 'auth'         // a registry or cluster refused the credentials
  | 'tls'          // certificate verification failed
  | 'network'      // could not reach a server
  | 'not-found'    // an image, blob or object is missing
  | 'integrity'    // a digest did not match
  | 'conflict'     // another operation or an existing installation is in the way
  | 'timeout'      // something did not become ready in time
  | 'failed'       // an operation failed for a reason reported by the server
  | 'internal'

const exitCodes: Record<ErrorKind, number> = {
  usage: 2,
  input: 3,
  auth: 4,
  tls: 5,
  network: 6,
  'not-found': 7,
  integrity: 8,
  conflict: 9,
  timeout: 10,
  failed: 11,
  internal: 70,
}

export class KpiError extends Error {
  readonly kind: ErrorKind
  readonly hint?: string
  readonly details?: unknown

  constructor(kind: ErrorKind, message: string, opts: {hint?: string; cause?: unknown; details?: unknown} = {}) {
    super(message, opts.cause === undefined ? undefined : {cause: opts.cause})
    this.name = 'KpiError'
    this.kind = kind
    this.hint = opts.hint
    this.details = opts.details
  }

  get exitCode(): number {
    return exitCodes[this.kind]
  }
}

export const isKpiError = (e: unknown): e is KpiError => e instanceof KpiError

/** One line for humans: message, then the hint. Never a stack trace. */
export function formatError(e: unknown): string {
  if (isKpiError(e)) return e.hint ? `${e.message}: ${e.hint}` : e.message
  if (e instanceof Error) return e.message
  return String(e)
}

export function exitCodeOf(e: unknown): number {
  return isKpiError(e) ? e.exitCode : 1
}
