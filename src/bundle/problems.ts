/**
 * Problems in a bundle file: the shared problem shape (src/problems/), counted as problems "in the
 * bundle", with the warnings kept beside them for --json.
 */
import type {KpiError} from '../errors.js'
import {formatProblem, problemsError as filesProblemsError, type Problem} from '../problems/problem.js'

export type BundleProblem = Problem
export {formatProblem}

export const problemsError = (file: string, problems: BundleProblem[], warnings: BundleProblem[] = []): KpiError =>
  filesProblemsError(file, problems, {noun: 'the bundle', warnings})
