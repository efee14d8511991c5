/**
 * Reads the values file: YAML, checked against the JSON schema (ajv) and then by the checks a
 * schema cannot express. Every problem is collected and reported as `file:line:col: field: message`.
 * Messages never quote values: the file holds credentials.
 */
import {X509Certificate} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {isIP} from 'node:net'
import {dirname, isAbsolute, resolve} from 'node:path'
import {Ajv, type ErrorObject, type ValidateFunction} from 'ajv'
import {isMap, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair} from 'yaml'
import {KpiError} from '../errors.js'
import type {ProxyValues, RbacSubject, RegistryValues, TeamValues, Values, WebhookValues, WorkloadValues} from './types.js'
import {patternMeaning, valuesSchema} from './values-schema.js'

export interface ValuesProblem {
  file: string
  line?: number
  col?: number
  /** field path like `registry.username` or `teams[1].name` */
  path?: string
  message: string
}

type Seg = string | number

let validator: ValidateFunction | undefined
function validate(): ValidateFunction {
  validator ??= new Ajv({allErrors: true, verbose: true, strict: true, allowUnionTypes: true}).compile(valuesSchema)
  return validator
}

/** Reads, validates and resolves a values file (files it names are read relative to it). */
export async function loadValues(path: string): Promise<Values> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new KpiError('input', `${path}: cannot read the values file (${code ?? 'error'})`, {
      hint: code === 'ENOENT' ? 'pass the path of a values YAML file with -f (see docs/values.md)' : 'check the file permissions',
    })
  }
  return parseValues(text, path, {readFile: (p) => readFile(p, 'utf8')})
}

export interface ParseValuesOptions {
  /** reads passwordFile / dockerConfigJsonFile; without it those fields are an error */
  readFile?: (path: string) => Promise<string>
}

/** Parses and validates values text; `file` names it in messages and anchors relative paths. */
export async function parseValues(text: string, file: string, opts: ParseValuesOptions = {}): Promise<Values> {
  const lc = new LineCounter()
  const doc = parseDocument(text, {lineCounter: lc, prettyErrors: false, uniqueKeys: true})
  const problems: ValuesProblem[] = []
  const at = (path: Seg[], message: string, onKey = false): void => {
    problems.push({file, ...position(doc, lc, path, onKey), ...(path.length ? {path: fieldPath(path)} : {}), message})
  }
  for (const e of doc.errors) {
    const {line, col} = lc.linePos(e.pos[0])
    problems.push({file, line, col, message: `YAML syntax: ${e.message.split('\n')[0]}`})
  }
  if (problems.length) throw valuesError(file, problems)

  const data = (doc.toJS() ?? {}) as unknown
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    at([], 'the values file must be a YAML mapping with at least registry.server and registry.repository')
    throw valuesError(file, problems)
  }
  const v = validate()
  if (!v(data)) for (const e of v.errors ?? []) schemaProblem(e, at)
  // The semantic checks only look at parts whose shape the schema accepted, and the credential
  // combinations only when the registry section has no schema problem (a misspelt `usrname` would
  // otherwise also report "a password needs a username").
  const raw = data as RawValues
  const registryClean = !problems.some((p) => p.path === 'registry' || p.path?.startsWith('registry.'))
  const registry = await checkRegistry(raw, file, opts, at, registryClean)
  checkCaCerts(raw, at)
  checkProxy(raw, at)
  checkCluster(raw, at)
  checkTeams(raw, at)
  if (problems.length) throw valuesError(file, problems)
  return normalise(raw, registry!)
}

// ---- problems ----

function valuesError(file: string, problems: ValuesProblem[]): KpiError {
  const sorted = [...problems].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
  const lines = sorted.map(formatValuesProblem)
  const hint = 'fix the values file (kpi values schema prints the schema; docs/values.md describes every field)'
  if (lines.length === 1) return new KpiError('input', lines[0]!, {hint, details: {source: 'problems', problems: sorted}})
  return new KpiError('input', [`${file}: ${lines.length} problems in the values file`, ...lines.map((l) => `  ${l}`)].join('\n'), {
    hint,
    details: {source: 'problems', problems: sorted},
  })
}

export function formatValuesProblem(p: ValuesProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.col ?? 1}`
  return `${where}: ${p.path ? `${p.path}: ` : ''}${p.message}`
}

export function fieldPath(path: Seg[]): string {
  let s = ''
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : s ? `.${seg}` : seg
  return s
}

function pointerToPath(pointer: string): Seg[] {
  if (!pointer) return []
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s))
}

/** Line and column of the node at `path` (of its key when `onKey`), falling back to the nearest parent. */
function position(doc: Document, lc: LineCounter, path: Seg[], onKey: boolean): {line?: number; col?: number} {
  let node: unknown = doc.contents
  let best: number | undefined = (node as Node | null)?.range?.[0]
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!
    const last = i === path.length - 1
    if (isMap(node)) {
      const pair = (node.items as Pair[]).find((p) => keyString(p.key) === String(seg))
      if (!pair) break
      const keyStart = (pair.key as Node | null)?.range?.[0]
      if (last && onKey && keyStart !== undefined) {
        best = keyStart
        break
      }
      node = pair.value
      best = (node as Node | null)?.range?.[0] ?? keyStart ?? best
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg]
      best = (node as Node | null)?.range?.[0] ?? best
    } else break
  }
  if (best === undefined) return {}
  const {line, col} = lc.linePos(best)
  return {line, col}
}

function keyString(k: unknown): string | undefined {
  if (k && typeof k === 'object' && 'value' in k) return String((k as {value: unknown}).value)
  return typeof k === 'string' ? k : undefined
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

function schemaProblem(e: ErrorObject, at: (path: Seg[], message: string, onKey?: boolean) => void): void {
  const path = pointerToPath(e.instancePath)
  const parent = e.parentSchema as {description?: string; properties?: Record<string, unknown>} | undefined
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

/** The known name within edit distance 2 (or a third of its length), for "did you mean". */
export function closest(name: string, known: string[]): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  for (const k of known) {
    const d = distance(name.toLowerCase(), k.toLowerCase())
    if (d < bestD) {
      best = k
      bestD = d
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

function distance(a: string, b: string): number {
  const prev = Array.from({length: b.length + 1}, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = tmp
    }
  }
  return prev[b.length]!
}

// ---- semantic checks ----

type At = (path: Seg[], message: string, onKey?: boolean) => void

interface RawValues {
  registry?: Partial<Record<'server' | 'repository' | 'username' | 'password' | 'passwordFile' | 'dockerConfigJson' | 'dockerConfigJsonFile', unknown>>
  caCerts?: unknown
  proxy?: {httpProxy?: unknown; httpsProxy?: unknown; noProxy?: unknown}
  cluster?: {domain?: unknown; serviceCIDR?: unknown; podCIDR?: unknown}
  teams?: unknown
  kpack?: Record<string, Record<string, unknown> | undefined>
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)

async function checkRegistry(raw: RawValues, file: string, opts: ParseValuesOptions, at: At, checkCombinations: boolean): Promise<RegistryValues | undefined> {
  const r = raw.registry
  if (!r || typeof r !== 'object') return undefined
  const server = str(r.server)
  const repository = str(r.repository)
  const out: RegistryValues = {server: server ?? '', repository: (repository ?? '').replace(/^\/+|\/+$/g, '')}
  const has = (k: keyof typeof r): boolean => r[k] !== undefined
  const readRel = async (field: 'passwordFile' | 'dockerConfigJsonFile'): Promise<string | undefined> => {
    const p = str(r[field])
    if (p === undefined) return undefined
    if (!opts.readFile) {
      at(['registry', field], 'files cannot be read here; give the value inline')
      return undefined
    }
    const full = isAbsolute(p) ? p : resolve(dirname(file), p)
    try {
      return await opts.readFile(full)
    } catch (e) {
      at(['registry', field], `cannot read ${full} (${(e as NodeJS.ErrnoException).code ?? 'error'})`)
      return undefined
    }
  }
  const docker = has('dockerConfigJson') || has('dockerConfigJsonFile')
  const basic = has('username') || has('password') || has('passwordFile')
  if (checkCombinations) {
    if (docker && basic) {
      at(['registry', has('dockerConfigJson') ? 'dockerConfigJson' : 'dockerConfigJsonFile'], 'give either username/password or a docker config, not both', true)
    }
    if (has('dockerConfigJson') && has('dockerConfigJsonFile')) at(['registry', 'dockerConfigJsonFile'], 'give dockerConfigJson or dockerConfigJsonFile, not both', true)
    if (has('password') && has('passwordFile')) at(['registry', 'passwordFile'], 'give password or passwordFile, not both', true)
    if (has('username') && !has('password') && !has('passwordFile')) at(['registry', 'username'], 'a username needs password or passwordFile', true)
    if (!has('username') && (has('password') || has('passwordFile'))) {
      at(['registry', has('password') ? 'password' : 'passwordFile'], 'a password needs a username', true)
    }
  }
  if (has('username')) out.username = str(r.username)
  if (has('password')) out.password = str(r.password)
  if (has('passwordFile')) {
    const p = await readRel('passwordFile')
    if (p !== undefined) {
      // files written by `echo` end in a newline that is no part of the password
      const pw = p.replace(/\r?\n$/, '')
      if (!pw) at(['registry', 'passwordFile'], 'the password file is empty')
      out.password = pw
    }
  }
  let dockerJson = str(r.dockerConfigJson)
  const dockerField = has('dockerConfigJson') ? 'dockerConfigJson' : 'dockerConfigJsonFile'
  if (has('dockerConfigJsonFile')) dockerJson = await readRel('dockerConfigJsonFile')
  if (dockerJson !== undefined) {
    const why = checkDockerConfig(dockerJson, out.server)
    if (why) at(['registry', dockerField], why)
    else out.dockerConfigJson = dockerJson
  }
  return out
}

/** Why a docker config JSON is unusable, or undefined. Never quotes the content (it holds credentials). */
export function checkDockerConfig(text: string, server: string): string | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return 'not valid JSON (expected a docker config.json document with "auths")'
  }
  const auths = (parsed as {auths?: unknown} | null)?.auths
  if (!auths || typeof auths !== 'object' || Array.isArray(auths)) return 'no "auths" object (a docker config.json has {"auths": {"<server>": {...}}})'
  if (!server) return undefined
  const hosts = Object.keys(auths).map((k) => k.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase())
  if (!hosts.includes(server.toLowerCase())) return `no "auths" entry for ${server} (the registry.server)`
  const entry = (auths as Record<string, unknown>)[Object.keys(auths)[hosts.indexOf(server.toLowerCase())]!] as Record<string, unknown> | null
  if (!entry || typeof entry !== 'object' || !(entry.auth || (entry.username && entry.password) || entry.identitytoken)) {
    return `the "auths" entry for ${server} has no auth, username/password or identitytoken (credential helpers cannot run in the cluster)`
  }
  return undefined
}

const pemBlock = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g

/** The certificates of a PEM text, or why it is unusable. */
export function parsePemCertificates(pem: string): {certs: X509Certificate[]; error?: string} {
  const certs: X509Certificate[] = []
  let count = 0
  for (const m of pem.matchAll(pemBlock)) {
    count++
    if (m[1] !== 'CERTIFICATE') return {certs, error: `block ${count} is a ${m[1]}, not a CERTIFICATE (only public CA certificates belong here)`}
    try {
      certs.push(new X509Certificate(m[0]))
    } catch {
      return {certs, error: `block ${count} is not a valid X.509 certificate`}
    }
  }
  if (count === 0) return {certs, error: 'no PEM certificate (expected -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)'}
  const rest = pem.replace(pemBlock, '').trim()
  if (rest) return {certs, error: 'text outside the PEM blocks (a truncated or damaged certificate?)'}
  return {certs}
}

function checkCaCerts(raw: RawValues, at: At): void {
  if (!Array.isArray(raw.caCerts)) return
  raw.caCerts.forEach((pem, i) => {
    if (typeof pem !== 'string') return
    const {error} = parsePemCertificates(pem)
    if (error) at(['caCerts', i], `malformed PEM: ${error}`)
  })
}

/** Why a proxy URL is unusable, or undefined. Go's http.ProxyFromEnvironment takes http, https and socks5. */
export function checkProxyUrl(u: string): string | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(u)) return 'must be a URL with a scheme, e.g. http://proxy.corp:3128'
  let url: URL
  try {
    url = new URL(u)
  } catch {
    return 'is not a valid URL'
  }
  if (!['http:', 'https:', 'socks5:'].includes(url.protocol)) return `scheme ${url.protocol.slice(0, -1)} is not supported (http, https or socks5)`
  if (!url.hostname) return 'has no host'
  if (url.pathname && url.pathname !== '/') return 'must not have a path'
  return undefined
}

function checkProxy(raw: RawValues, at: At): void {
  const p = raw.proxy
  if (!p || typeof p !== 'object') return
  for (const k of ['httpProxy', 'httpsProxy'] as const) {
    const u = str(p[k])
    if (u === undefined) continue
    const why = checkProxyUrl(u)
    if (why) at(['proxy', k], why)
  }
  const entries = listOf(p.noProxy)
  entries.forEach((e, i) => {
    if (/\s/.test(e.trim()) || (Array.isArray(p.noProxy) && e.includes(','))) {
      at(['proxy', 'noProxy', ...(Array.isArray(p.noProxy) ? [i] : [])], 'entries are host names, .domains, IPs or CIDRs without spaces (one per list item)')
    }
  })
}

function listOf(v: unknown): string[] {
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean)
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string').map((s) => s.trim())
  return []
}

export function isCidr(s: string): boolean {
  const [addr, bits, ...more] = s.split('/')
  if (more.length || addr === undefined || bits === undefined || !/^\d{1,3}$/.test(bits)) return false
  const v = isIP(addr)
  return v !== 0 && Number(bits) <= (v === 4 ? 32 : 128)
}

function checkCluster(raw: RawValues, at: At): void {
  const c = raw.cluster
  if (!c || typeof c !== 'object') return
  for (const k of ['serviceCIDR', 'podCIDR'] as const) {
    const list = listOf(c[k])
    list.forEach((cidr, i) => {
      if (!isCidr(cidr)) at(['cluster', k, ...(Array.isArray(c[k]) ? [i] : [])], 'expected a CIDR such as 10.96.0.0/12')
    })
  }
}

const reservedNamespaces = new Set(['kpack', 'default', 'kube-system', 'kube-public', 'kube-node-lease'])

function checkTeams(raw: RawValues, at: At): void {
  if (!Array.isArray(raw.teams)) return
  const names = new Map<string, number>()
  const namespaces = new Map<string, number>()
  raw.teams.forEach((t: unknown, i) => {
    if (!t || typeof t !== 'object') return
    const team = t as {name?: unknown; namespace?: unknown; builders?: unknown}
    const name = str(team.name)
    const ns = str(team.namespace) ?? name
    if (name !== undefined) {
      if (names.has(name)) at(['teams', i, 'name'], `duplicate team name (also teams[${names.get(name)}])`)
      else names.set(name, i)
    }
    if (ns !== undefined) {
      if (reservedNamespaces.has(ns) || ns.startsWith('kube-')) {
        at(['teams', i, team.namespace === undefined ? 'name' : 'namespace'], `namespace ${ns} is reserved; give the team its own namespace`)
      } else if (namespaces.has(ns)) at(['teams', i, team.namespace === undefined ? 'name' : 'namespace'], `namespace ${ns} is already used by teams[${namespaces.get(ns)}]`)
      else namespaces.set(ns, i)
    }
    if (Array.isArray(team.builders)) {
      const seen = new Set<string>()
      team.builders.forEach((b: unknown, j) => {
        const bn = str((b as {name?: unknown} | null)?.name)
        if (bn === undefined) return
        if (seen.has(bn)) at(['teams', i, 'builders', j, 'name'], 'duplicate builder name in this team')
        seen.add(bn)
      })
    }
  })
}

// ---- normalise: defaults filled, alternatives resolved ----

function workloadOf(raw: Record<string, unknown> | undefined): WorkloadValues {
  const w = raw ?? {}
  return {
    replicas: typeof w.replicas === 'number' ? w.replicas : 1,
    ...(w.resources ? {resources: w.resources as WorkloadValues['resources']} : {}),
    ...(w.nodeSelector ? {nodeSelector: w.nodeSelector as Record<string, string>} : {}),
    ...(w.tolerations ? {tolerations: w.tolerations as WorkloadValues['tolerations']} : {}),
  }
}

function webhookOf(raw: Record<string, unknown> | undefined): WebhookValues {
  return {...workloadOf(raw), failurePolicy: raw?.failurePolicy === 'Ignore' ? 'Ignore' : 'Fail'}
}

function normalise(raw: RawValues, registry: RegistryValues): Values {
  const proxy: ProxyValues | undefined = raw.proxy
    ? {
        ...(str(raw.proxy.httpProxy) ? {httpProxy: str(raw.proxy.httpProxy)} : {}),
        ...(str(raw.proxy.httpsProxy) ? {httpsProxy: str(raw.proxy.httpsProxy)} : {}),
        noProxy: listOf(raw.proxy.noProxy),
      }
    : undefined
  const teams: TeamValues[] = (Array.isArray(raw.teams) ? raw.teams : []).map((t: Record<string, unknown>) => {
    const namespace = str(t.namespace) ?? String(t.name)
    return {
      name: String(t.name),
      namespace,
      serviceAccount: str(t.serviceAccount) ?? 'kpi-builds',
      subjects: ((t.subjects as RbacSubject[] | undefined) ?? []).map((s) =>
        s.kind === 'ServiceAccount' ? {kind: s.kind, name: s.name, namespace: s.namespace ?? namespace} : {kind: s.kind, name: s.name},
      ),
      builders: (t.builders as TeamValues['builders'] | undefined) ?? [],
    }
  })
  return {
    registry,
    caCerts: Array.isArray(raw.caCerts) ? (raw.caCerts as string[]) : [],
    ...(proxy ? {proxy} : {}),
    cluster: {
      domain: str(raw.cluster?.domain) ?? 'cluster.local',
      serviceCIDR: listOf(raw.cluster?.serviceCIDR),
      podCIDR: listOf(raw.cluster?.podCIDR),
    },
    teams,
    kpack: {
      controller: workloadOf(raw.kpack?.controller),
      webhook: webhookOf(raw.kpack?.webhook),
      injector: webhookOf(raw.kpack?.injector),
    },
  }
}
