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
  | 'rolled-back'  // an upgrade failed and the previous revision was put back, healthy
  | 'interrupted'  // stopped by Ctrl-C, SIGTERM or SIGHUP, after stopping what it started
  | 'internal'

/** The exit code of each kind (README "Exit codes"; src/cli/base.ts names them for commands). */
export const exitCodes: Record<ErrorKind, number> = {
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
  'rolled-back': 12,
  // 128 + SIGINT, what a shell reports for a command Ctrl-C ended
  interrupted: 130,
  internal: 70,
}

/** A registry answered with an error: its HTTP status and the `errors[].code`s of its body. */
export interface RegistryErrorDetails {
  source: 'registry'
  status: number
  codes: string[]
}

/** One field another manager owns, from a server-side apply conflict (a `FieldManagerConflict` cause). */
export interface FieldConflict {
  /** the field manager that owns the field, e.g. `kubectl-edit` */
  manager: string
  /** the field path as the API server names it, e.g. `.spec.replicas` */
  field: string
}

/** The Kubernetes API answered with a Status: its HTTP code, `reason`, and the fields an apply conflicted on. */
export interface KubernetesErrorDetails {
  source: 'kubernetes'
  status: number
  reason?: string
  /** present on a 409 from server-side apply; empty when the server named no field */
  conflicts?: FieldConflict[]
}

/** A positioned problem in a file the user edits (bundle, values): `file:line:col: path: message: hint`. */
export interface ProblemDetail {
  file: string
  /** 1-based; absent when the problem is about the file as a whole (missing, empty) */
  line?: number
  col?: number
  /** field path like `stacks[0].runImage` or `registry.username` */
  path?: string
  message: string
  hint?: string
}

/**
 * What callers may inspect instead of the message text. `source` says which shape it is;
 * the last member keeps room for one-off structured data (lists for --json).
 */
export type ErrorDetails =
  | RegistryErrorDetails
  | KubernetesErrorDetails
  | {source: 'problems'; problems: ProblemDetail[]; warnings?: ProblemDetail[]}
  | {source: 'reference'; reason: string}
  | {source?: 'other'; [key: string]: unknown}

export class KpiError extends Error {
  readonly kind: ErrorKind
  readonly hint?: string
  readonly details?: ErrorDetails

  constructor(kind: ErrorKind, message: string, opts: {hint?: string; cause?: unknown; details?: ErrorDetails} = {}) {
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

/** The registry details of an error, when a registry answered it. */
export const registryDetails = (e: unknown): RegistryErrorDetails | undefined =>
  isKpiError(e) && e.details?.source === 'registry' ? e.details : undefined

/** The Kubernetes details of an error, when the API server answered it. */
export const kubernetesDetails = (e: unknown): KubernetesErrorDetails | undefined =>
  isKpiError(e) && e.details?.source === 'kubernetes' ? e.details : undefined

/** One line for humans: message, then the hint. Never a stack trace. */
export function formatError(e: unknown): string {
  if (isKpiError(e)) return e.hint ? `${e.message}: ${e.hint}` : e.message
  if (e instanceof Error) return e.message
  return String(e)
}

export function exitCodeOf(e: unknown): number {
  return isKpiError(e) ? e.exitCode : 1
}
