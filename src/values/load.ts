/**
 * Reads the values file: YAML, checked against the JSON schema (ajv, validator.ts) and then by the checks a
 * schema cannot express. Every problem is collected and reported as `file:line:col: field: message`.
 * Messages never quote values: the file holds credentials.
 */
import {readFile} from 'node:fs/promises'
import type {ErrorObject} from 'ajv'
import {LineCounter, parseDocument} from 'yaml'
import {KpiError} from '../errors.js'
import {readTextFile} from '../textfile.js'
import {problemsError, sortProblems, type Problem} from '../problems/problem.js'
import {closest} from '../problems/suggest.js'
import {fieldPath, pathPosition, yamlSyntaxProblem, type PathSegment} from '../problems/yaml.js'
import {checkCaCerts, checkCluster, checkProxy, checkRegistry, checkResources, checkTeamRegistries, checkTeams, checkTolerations, type At, type RawValues, type ReadFileOption} from './checks.js'
import {normalise} from './normalise.js'
import {patternMeaning} from './schema.js'
import type {Values} from './types.js'
import {valuesValidator} from './validator.js'

type Seg = PathSegment

/** Reads, validates and resolves a values file (files it names are read relative to it). */
export async function loadValues(path: string): Promise<Values> {
  let text: string
  try {
    text = await readTextFile(path, 'values file')
  } catch (e) {
    if (e instanceof KpiError) throw e
    const code = (e as NodeJS.ErrnoException).code
    throw new KpiError('input', `${path}: cannot read the values file (${code ?? 'error'})`, {
      hint: code === 'ENOENT' ? 'pass the path of a values YAML file with -f (see docs/values.md)' : 'check the file permissions',
    })
  }
  return parseValues(text, path, {readFile: (p) => readFile(p, 'utf8')})
}

export type ParseValuesOptions = ReadFileOption

/** Parses and validates values text; `file` names it in messages and anchors relative paths. */
export async function parseValues(text: string, file: string, opts: ParseValuesOptions = {}): Promise<Values> {
  const lc = new LineCounter()
  const doc = parseDocument(text, {lineCounter: lc, prettyErrors: false, uniqueKeys: true, logLevel: 'error'})
  const problems: Problem[] = []
  const at = (path: Seg[], message: string, onKey = false): void => {
    problems.push({file, ...pathPosition(doc, lc, path, onKey), ...(path.length ? {path: fieldPath(path)} : {}), message})
  }
  for (const e of doc.errors) problems.push(yamlSyntaxProblem(file, lc, e))
  if (problems.length) throw valuesError(file, problems)

  let data: unknown
  try {
    data = (doc.toJS() ?? {}) as unknown
  } catch (e) {
    // yaml refuses aliases that expand too much (a "billion laughs" file) while converting
    problems.push({file, message: `YAML: ${(e as Error).message}`})
    throw valuesError(file, problems)
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    at([], 'the values file must be a YAML mapping with at least registry.server and registry.repository')
    throw valuesError(file, problems)
  }
  const v = await valuesValidator()
  if (!v(data)) for (const e of v.errors ?? []) schemaProblem(e, at)
  // The semantic checks only look at parts whose shape the schema accepted, and the credential
  // combinations only when the registry section has no schema problem (a misspelt `usrname` would
  // otherwise also report "a password needs a username").
  const raw = data as RawValues
  const registryClean = !problems.some((p) => p.path === 'registry' || p.path?.startsWith('registry.'))
  const registry = await checkRegistry(raw, file, opts, at, registryClean)
  const teamRegistryClean = (i: number) => !problems.some((p) => p.path === `teams[${i}].registry` || p.path?.startsWith(`teams[${i}].registry.`))
  const teamRegistries = await checkTeamRegistries(raw, registry?.server ?? '', file, opts, at, teamRegistryClean)
  checkCaCerts(raw, at)
  checkProxy(raw, at)
  checkCluster(raw, at)
  checkTeams(raw, at)
  checkResources(raw, at)
  checkTolerations(raw, at)
  if (problems.length) throw valuesError(file, problems)
  return normalise(raw, registry!, teamRegistries)
}

function valuesError(file: string, problems: Problem[]): KpiError {
  const hint = 'fix the values file (kpi values schema prints the schema; docs/values.md describes every field)'
  return problemsError(file, sortProblems(problems), {noun: 'the values file', hint})
}

function pointerToPath(pointer: string): Seg[] {
  if (!pointer) return []
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s))
}

const typeNames: Record<string, string> = {string: 'a string', number: 'a number', integer: 'an integer', boolean: 'true or false', object: 'a mapping', array: 'a list', null: 'null'}

function typeOf(v: unknown): string {
  if (v === null || v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number'
  if (typeof v === 'boolean') return 'a boolean'
  return 'a string'
}

function schemaProblem(e: ErrorObject, at: At): void {
  const path = pointerToPath(e.instancePath)
  const parent = e.parentSchema as {description?: string; properties?: Record<string, unknown>} | undefined
  // a key the schema refuses (propertyNames): named at the key, with what a key must be; ajv's
  // summary error for it ("property name must be valid") adds nothing
  if (e.keyword === 'propertyNames') return
  if (e.propertyName !== undefined) {
    const meaning = e.keyword === 'pattern' ? patternMeaning[(e.params as {pattern: string}).pattern] : undefined
    at([...path, e.propertyName], `invalid key: ${meaning ? `expected ${meaning}` : e.message ?? 'not allowed here'}`, true)
    return
  }
  switch (e.keyword) {
    case 'additionalProperties': {
      const name = (e.params as {additionalProperty: string}).additionalProperty
      const known = Object.keys(parent?.properties ?? {})
      const guess = closest(name, known)
      const list = known.length ? ` (known: ${known.join(', ')})` : ''
      at([...path, name], `unknown field${guess ? ` (did you mean ${guess}?)` : list}`, true)
      return
    }
    case 'required':
      at(path, `missing required field ${(e.params as {missingProperty: string}).missingProperty}`)
      return
    case 'type': {
      const want = ([] as string[]).concat((e.params as {type: string | string[]}).type)
      at(path, `expected ${want.map((t) => typeNames[t] ?? t).join(' or ')}, got ${typeOf(e.data)}`)
      return
    }
    case 'enum':
      at(path, `must be one of ${((e.params as {allowedValues: unknown[]}).allowedValues ?? []).join(', ')}`)
      return
    case 'pattern': {
      const meaning = patternMeaning[(e.params as {pattern: string}).pattern] ?? parent?.description
      at(path, `invalid value${meaning ? `: expected ${meaning}` : ''}`)
      return
    }
    default:
      at(path, e.message ?? 'invalid value')
  }
}
