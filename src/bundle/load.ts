/**
 * Reads a bundle (a directory holding bundle.yaml, or one YAML file), checks it against
 * v1alpha1 and returns it, or reports every problem with file:line:col.
 */
import {stat} from 'node:fs/promises'
import {join} from 'node:path'
import {LineCounter, parseDocument} from 'yaml'
import {isKpiError} from '../errors.js'
import {sortProblems} from '../problems/problem.js'
import {yamlSyntaxProblem} from '../problems/yaml.js'
import {problemsError, type BundleProblem} from './problems.js'
import {readTextFile} from '../textfile.js'
import type {Bundle, LoadedBundle} from './types.js'
import {validateDocument, type ValidateOptions} from './validate.js'

export const BUNDLE_FILE = 'bundle.yaml'

export type BundleCheck =
  | {ok: true; loaded: LoadedBundle; file: string; problems: []; warnings: BundleProblem[]}
  | {ok: false; file: string; problems: BundleProblem[]; warnings: BundleProblem[]; bundle?: Partial<Bundle>}

/** Loads and validates; throws KpiError('input') naming every problem. */
export async function loadBundle(path: string, opts: ValidateOptions = {}): Promise<LoadedBundle> {
  const r = await checkBundle(path, opts)
  if (!r.ok) throw problemsError(r.file, r.problems, r.warnings)
  return r.loaded
}

/** Like loadBundle but returns the problems instead of throwing (for `kpi bundle lint --json`). */
export async function checkBundle(path: string, opts: ValidateOptions = {}): Promise<BundleCheck> {
  let file = path
  let dir: string | undefined
  const fail = (message: string, hint: string): BundleCheck => ({ok: false, file, problems: [{file, message, hint}], warnings: []})
  let st
  try {
    st = await stat(path)
  } catch {
    return fail('bundle not found', `pass a bundle directory containing ${BUNDLE_FILE}, or a bundle YAML file`)
  }
  if (st.isDirectory()) {
    dir = path
    file = join(path, BUNDLE_FILE)
  }
  let raw: string
  try {
    raw = await readTextFile(file, 'bundle file')
  } catch (e) {
    if (isKpiError(e)) return fail(e.message.replace(`${file}: `, ''), e.hint ?? '')
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return fail(`no ${BUNDLE_FILE} in the bundle directory`, `a bundle directory holds ${BUNDLE_FILE}; or pass the manifest file itself`)
    return fail(`cannot read the bundle file (${code ?? String(e)})`, 'check the path and its permissions')
  }
  return checkBundleText(raw, file, dir, opts)
}

/** Parses and validates bundle text; `file` is used in messages. */
export function checkBundleText(raw: string, file: string, dir?: string, opts: ValidateOptions = {}): BundleCheck {
  const lc = new LineCounter()
  const doc = parseDocument(raw, {lineCounter: lc, prettyErrors: false, uniqueKeys: true, logLevel: 'error'})
  const problems: BundleProblem[] = []
  const warnings: BundleProblem[] = []
  for (const e of doc.errors) problems.push(yamlProblem(file, lc, e))
  for (const w of doc.warnings) warnings.push(yamlProblem(file, lc, w))
  // A syntax error leaves a partial tree; validating it would add noise after the real cause.
  if (problems.length === 0) {
    const v = validateDocument(doc, lc, file, opts)
    problems.push(...v.problems)
    warnings.push(...v.warnings)
  }
  const sortedWarnings = sortProblems(warnings)
  if (problems.length > 0) {
    let partial: Partial<Bundle> | undefined
    try {
      const js = doc.toJS() as unknown
      if (js && typeof js === 'object' && !Array.isArray(js)) partial = js as Partial<Bundle>
    } catch {
      partial = undefined
    }
    return {ok: false, file, problems: sortProblems(problems), warnings: sortedWarnings, ...(partial ? {bundle: partial} : {})}
  }
  let bundle: Bundle
  try {
    bundle = doc.toJS() as Bundle
  } catch (e) {
    // yaml refuses aliases that expand too much (a "billion laughs" file) while converting
    return {ok: false, file, problems: [{file, message: `YAML: ${(e as Error).message}`, hint: 'write the values out instead of through aliases'}], warnings: sortedWarnings}
  }
  const loaded: LoadedBundle = {bundle, file, raw, ...(dir === undefined ? {} : {dir}), ...(sortedWarnings.length ? {warnings: sortedWarnings} : {})}
  return {ok: true, loaded, file, problems: [], warnings: sortedWarnings}
}

const yamlProblem = (file: string, lc: LineCounter, e: {message: string; pos: [number, number]}): BundleProblem =>
  ({...yamlSyntaxProblem(file, lc, e), hint: 'fix the YAML syntax at that line'})

/** Parses bundle text or throws KpiError('input'). */
export function parseBundle(raw: string, file = BUNDLE_FILE): Bundle {
  const r = checkBundleText(raw, file)
  if (!r.ok) throw problemsError(r.file, r.problems, r.warnings)
  return r.loaded.bundle
}
