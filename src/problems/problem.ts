/**
 * A problem in a file the user edits (bundle, values), positioned so the user can jump to it:
 * `file:line:col: path: message: hint`. Loaders collect every problem rather than stopping at the first.
 */
import {KpiError, type ProblemDetail} from '../errors.js'

/** The shape KpiError details carry (errors.ts): line and col 1-based, path like `stacks[0].runImage`. */
export type Problem = ProblemDetail

/** `file:line:col: path` (the hint is kept apart so one-problem errors can carry it as KpiError.hint). */
export function problemLocation(p: Problem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.col ?? 1}`
  return p.path ? `${where}: ${p.path}` : where
}

export function formatProblem(p: Problem, withHint = true): string {
  const line = `${problemLocation(p)}: ${p.message}`
  return withHint && p.hint ? `${line}: ${p.hint}` : line
}

export function sortProblems<P extends Problem>(ps: P[]): P[] {
  return [...ps].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
}

export interface ProblemsErrorOptions {
  /** what the file is, for the counting line: `the bundle`, `the values file` */
  noun: string
  /** the hint of the whole error; a single problem's own hint wins */
  hint?: string
  /** kept in `details` beside the problems (for --json) */
  warnings?: Problem[]
}

/**
 * One problem: one line, with its hint as the KpiError hint. Several: a first line that counts
 * them, then one indented line each. `details` keeps the structured list for --json.
 */
export function problemsError(file: string, problems: Problem[], opts: ProblemsErrorOptions): KpiError {
  const details = {source: 'problems' as const, problems, ...(opts.warnings ? {warnings: opts.warnings} : {})}
  const [only] = problems
  if (problems.length === 1 && only) return new KpiError('input', formatProblem(only, false), {hint: only.hint ?? opts.hint, details})
  const lines = problems.map((p) => `  ${formatProblem(p)}`)
  return new KpiError('input', [`${file}: ${problems.length} problems in ${opts.noun}`, ...lines].join('\n'), {hint: opts.hint, details})
}
