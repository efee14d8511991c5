/**
 * A problem found in a bundle file, positioned so the user can jump to it: `file:line:col: path:
 * message: hint`. The validator collects every problem rather than stopping at the first.
 */
import {KpiError} from '../errors.js'

export interface BundleProblem {
  file: string
  /** 1-based; absent when the problem is about the file as a whole (missing, empty) */
  line?: number
  col?: number
  /** field path like `stacks[0].runImage` */
  path?: string
  message: string
  hint?: string
}

/** `file:line:col: path: message` (the hint is kept apart so one-problem errors can carry it as KpiError.hint). */
export function problemLocation(p: BundleProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.col ?? 1}`
  return p.path ? `${where}: ${p.path}` : where
}

export function formatProblem(p: BundleProblem, withHint = true): string {
  const line = `${problemLocation(p)}: ${p.message}`
  return withHint && p.hint ? `${line}: ${p.hint}` : line
}

export function sortProblems(ps: BundleProblem[]): BundleProblem[] {
  return [...ps].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
}

/**
 * One problem: one line, with its hint as the KpiError hint. Several: a first line that counts
 * them, then one indented line each. `details` keeps the structured list for --json.
 */
export function problemsError(file: string, problems: BundleProblem[], warnings: BundleProblem[] = []): KpiError {
  const details = {source: 'problems' as const, problems, warnings}
  const [only] = problems
  if (problems.length === 1 && only) return new KpiError('input', formatProblem(only, false), {hint: only.hint, details})
  const lines = problems.map((p) => `  ${formatProblem(p)}`)
  return new KpiError('input', [`${file}: ${problems.length} problems in the bundle`, ...lines].join('\n'), {details})
}
