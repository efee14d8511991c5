/**
 * The checks a JSON schema cannot express: credential alternatives, files the values name, PEM
 * certificates, proxy URLs, docker config JSON, CIDRs, duplicate teams, resources and tolerations
 * the apiserver refuses. Each reports through `at` and only looks at parts whose shape the schema
 * accepted. Messages never quote values.
 */
import {X509Certificate} from 'node:crypto'
import {isIP} from 'node:net'
import {dirname, isAbsolute, resolve} from 'node:path'
import {parseQuantity} from '../kube/capacity.js'
import {authEntryFor, parseDockerConfig, type DockerAuthEntry, type DockerConfig} from '../oci/index.js'
import type {PathSegment} from '../problems/yaml.js'
import {CERT_INJECTION_NS, KPACK_NAMESPACE, REVISION_NAMESPACE} from '../namespaces.js'
import {isCidr} from './cidr.js'
import {dnsSubdomain, labelKey, patternMeaning} from './schema.js'
import type {RegistryCredentials, RegistryValues, TeamRegistryValues} from './types.js'

type Seg = PathSegment

export interface ReadFileOption {
  /** reads passwordFile / dockerConfigJsonFile; without it those fields are an error */
  readFile?: (path: string) => Promise<string>
}

export type At = (path: Seg[], message: string, onKey?: boolean) => void

export interface RawValues {
  registry?: Partial<Record<'server' | 'repository' | CredentialField, unknown>>
  caCerts?: unknown
  proxy?: {httpProxy?: unknown; httpsProxy?: unknown; noProxy?: unknown}
  cluster?: {domain?: unknown; serviceCIDR?: unknown; podCIDR?: unknown}
  teams?: unknown
  kpack?: Record<string, Record<string, unknown> | undefined>
  certInjection?: Record<string, unknown>
}

export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)

type CredentialField = 'username' | 'password' | 'passwordFile' | 'dockerConfigJson' | 'dockerConfigJsonFile'

export async function checkRegistry(raw: RawValues, file: string, opts: ReadFileOption, at: At, checkCombinations: boolean): Promise<RegistryValues | undefined> {
  const r = raw.registry
  if (!r || typeof r !== 'object') return undefined
  const server = str(r.server)
  const repository = str(r.repository)
  const out: RegistryValues = {server: server ?? '', repository: (repository ?? '').replace(/^\/+|\/+$/g, '')}
  return Object.assign(out, await checkCredentials(r, ['registry'], out.server, file, opts, at, checkCombinations))
}

/**
 * Each team's own registry account (teams[].registry), its files read, by the team's index; the
 * combinations checked only for a team whose registry section has no schema problem.
 */
export async function checkTeamRegistries(raw: RawValues, server: string, file: string, opts: ReadFileOption, at: At, clean: (i: number) => boolean): Promise<Map<number, TeamRegistryValues>> {
  const out = new Map<number, TeamRegistryValues>()
  if (!Array.isArray(raw.teams)) return out
  for (const [i, t] of raw.teams.entries()) {
    const r = (t as {registry?: unknown} | null)?.registry
    if (!r || typeof r !== 'object' || Array.isArray(r)) continue
    const fields = r as Partial<Record<CredentialField | 'repository', unknown>>
    const repository = str(fields.repository)?.replace(/^\/+|\/+$/g, '')
    const creds = await checkCredentials(fields, ['teams', i, 'registry'], server, file, opts, at, clean(i))
    out.set(i, {...(repository ? {repository} : {}), ...creds})
  }
  return out
}

/** An account's fields at `base`: the alternatives checked, files read, a docker config checked against `server`. */
async function checkCredentials(r: Partial<Record<CredentialField, unknown>>, base: Seg[], server: string, file: string, opts: ReadFileOption, at: At, checkCombinations: boolean): Promise<RegistryCredentials> {
  const out: RegistryCredentials = {}
  const has = (k: CredentialField): boolean => r[k] !== undefined
  const readRel = async (field: 'passwordFile' | 'dockerConfigJsonFile'): Promise<string | undefined> => {
    const p = str(r[field])
    if (p === undefined) return undefined
    if (!opts.readFile) {
      at([...base, field], 'files cannot be read here; give the value inline')
      return undefined
    }
    const full = isAbsolute(p) ? p : resolve(dirname(file), p)
    try {
      return await opts.readFile(full)
    } catch (e) {
      at([...base, field], `cannot read ${full} (${(e as NodeJS.ErrnoException).code ?? 'error'})`)
      return undefined
    }
  }
  const docker = has('dockerConfigJson') || has('dockerConfigJsonFile')
  const basic = has('username') || has('password') || has('passwordFile')
  if (checkCombinations) {
    if (docker && basic) {
      at([...base, has('dockerConfigJson') ? 'dockerConfigJson' : 'dockerConfigJsonFile'], 'give either username/password or a docker config, not both', true)
    }
    if (has('dockerConfigJson') && has('dockerConfigJsonFile')) at([...base, 'dockerConfigJsonFile'], 'give dockerConfigJson or dockerConfigJsonFile, not both', true)
    if (has('password') && has('passwordFile')) at([...base, 'passwordFile'], 'give password or passwordFile, not both', true)
    if (has('username') && !has('password') && !has('passwordFile')) at([...base, 'username'], 'a username needs password or passwordFile', true)
    if (!has('username') && (has('password') || has('passwordFile'))) {
      at([...base, has('password') ? 'password' : 'passwordFile'], 'a password needs a username', true)
    }
  }
  // Basic auth (RFC 7617), and the `auth` field the kubelet and kpack decode, split user from
  // password at the first ':': such a username could never log in
  if (str(r.username)?.includes(':')) at([...base, 'username'], "a username cannot contain ':' (Basic authentication splits user and password at the first ':')")
  if (has('username')) out.username = str(r.username)
  if (has('password')) out.password = str(r.password)
  if (has('passwordFile')) {
    const p = await readRel('passwordFile')
    if (p !== undefined) {
      // files written by `echo` end in a newline that is no part of the password
      const pw = p.replace(/\r?\n$/, '')
      if (!pw) at([...base, 'passwordFile'], 'the password file is empty')
      out.password = pw
    }
  }
  let dockerJson = str(r.dockerConfigJson)
  const dockerField = has('dockerConfigJson') ? 'dockerConfigJson' : 'dockerConfigJsonFile'
  if (has('dockerConfigJsonFile')) dockerJson = await readRel('dockerConfigJsonFile')
  if (dockerJson !== undefined) {
    const why = checkDockerConfig(dockerJson, server)
    if (why) at([...base, dockerField], why)
    else out.dockerConfigJson = dockerJson
  }
  return out
}

/** Why a docker config JSON is unusable, or undefined. Never quotes the content (it holds credentials). */
export function checkDockerConfig(text: string, server: string): string | undefined {
  let cfg: DockerConfig
  try {
    cfg = parseDockerConfig(text)
  } catch {
    return 'not valid JSON (expected a docker config.json document with "auths")'
  }
  const auths = cfg.auths as unknown
  if (!auths || typeof auths !== 'object' || Array.isArray(auths)) return 'no "auths" object (a docker config.json has {"auths": {"<server>": {...}}})'
  if (!server) return undefined
  const entry = authEntryFor(cfg, server) as DockerAuthEntry | null | undefined
  if (entry === undefined) return `no "auths" entry for ${server} (the registry.server)`
  if (!entry || typeof entry !== 'object' || !(entry.auth || (entry.username && entry.password) || entry.identitytoken)) {
    return `the "auths" entry for ${server} has no auth, username/password or identitytoken (credential helpers cannot run in the cluster)`
  }
  return undefined
}

const pemBlock = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g

/** a line a CA bundle may hold between its certificates: a comment, or openssl's attributes */
const annotationLine = /^\s*#|^(Bag|Key) Attributes\b|^\s+[A-Za-z][\w ]*:|^(subject|issuer)=/

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
  // CA bundles carry comments (curl's and the distributions' `# Issuer: ...`) and openssl's
  // `Bag Attributes` / `subject=` / `issuer=` lines between blocks; only the blocks are rendered
  const rest = pem.replace(pemBlock, '').split(/\r?\n/).filter((l) => l.trim() && !annotationLine.test(l))
  if (rest.length) return {certs, error: 'text outside the PEM blocks (a truncated or damaged certificate?)'}
  return {certs}
}

export function checkCaCerts(raw: RawValues, at: At): void {
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

export function checkProxy(raw: RawValues, at: At): void {
  const p = raw.proxy
  if (!p || typeof p !== 'object') return
  let urls = 0
  for (const k of ['httpProxy', 'httpsProxy'] as const) {
    const u = str(p[k])
    if (u === undefined) continue
    const why = checkProxyUrl(u)
    if (why) at(['proxy', k], why)
    else urls++
  }
  // client-go's in-cluster config reaches the apiserver at the kubernetes Service's IP, which no
  // name in NO_PROXY matches: without the service CIDR the controller would ask the proxy for it
  // (an address or CIDR in noProxy may be that bypass already: taken as the user's word)
  const byAddress = listOf(p.noProxy).some((e) => isIP(e) !== 0 || isCidr(e))
  if (urls && !listOf(raw.cluster?.serviceCIDR).length && !byAddress) {
    at(['proxy'], 'a proxy needs cluster.serviceCIDR (the kpack controller reaches the apiserver at the kubernetes Service IP, which must bypass the proxy): add the cluster\'s service CIDR, e.g. 10.96.0.0/12', true)
  }
  const entries = listOf(p.noProxy)
  entries.forEach((e, i) => {
    if (/\s/.test(e.trim()) || (Array.isArray(p.noProxy) && e.includes(','))) {
      at(['proxy', 'noProxy', ...(Array.isArray(p.noProxy) ? [i] : [])], 'entries are host names, .domains, IPs or CIDRs without spaces (one per list item)')
    }
  })
}

export function listOf(v: unknown): string[] {
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean)
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string').map((s) => s.trim())
  return []
}

export function checkCluster(raw: RawValues, at: At): void {
  const c = raw.cluster
  if (!c || typeof c !== 'object') return
  for (const k of ['serviceCIDR', 'podCIDR'] as const) {
    const list = listOf(c[k])
    list.forEach((cidr, i) => {
      if (!isCidr(cidr)) at(['cluster', k, ...(Array.isArray(c[k]) ? [i] : [])], 'expected a CIDR such as 10.96.0.0/12')
    })
  }
}

/** The values' Deployments: where each sits, and its raw settings. */
const workloadsOf = (raw: RawValues): Array<[Seg[], unknown]> => [
  [['kpack', 'controller'], raw.kpack?.controller],
  [['kpack', 'webhook'], raw.kpack?.webhook],
  [['certInjection'], raw.certInjection],
]

/** The fields of a toleration the apiserver refuses (its ValidateTolerations), with why; types are the schema's. */
function tolerationProblems(t: Record<string, unknown>): Array<[string, string]> {
  const out: Array<[string, string]> = []
  const key = str(t.key) ?? ''
  const exists = t.operator === 'Exists'
  if (key && (key.length > 317 || !new RegExp(labelKey).test(key))) out.push(['key', `invalid value: expected ${patternMeaning[labelKey]}`])
  if (!key && !exists) out.push(['operator', 'must be Exists when there is no key (a toleration of every taint)'])
  if (exists && str(t.value)) out.push(['value', 'must be empty with operator Exists'])
  if (t.tolerationSeconds !== undefined && t.effect !== 'NoExecute') out.push(['effect', 'must be NoExecute when tolerationSeconds is set'])
  return out
}

/** Tolerations the apiserver would refuse when the install reaches the Deployment. */
export function checkTolerations(raw: RawValues, at: At): void {
  for (const [path, w] of workloadsOf(raw)) {
    const list = (w as {tolerations?: unknown} | null | undefined)?.tolerations
    if (!Array.isArray(list)) continue
    list.forEach((t: unknown, i) => {
      if (!t || typeof t !== 'object' || Array.isArray(t)) return
      for (const [field, why] of tolerationProblems(t as Record<string, unknown>)) at([...path, 'tolerations', i, field], why)
    })
  }
}

const entriesOf = (m: unknown): Array<[string, unknown]> => (m && typeof m === 'object' && !Array.isArray(m) ? Object.entries(m) : [])

/** More than `b`, beyond the rounding of decimal quantities in floating point (700m is not more than 0.7). */
const exceeds = (a: number, b: number): boolean => a - b > Math.abs(b) * 1e-12 + 1e-12

/**
 * What the apiserver refuses in a container's resources, which the schema's quantity pattern lets
 * through: a negative amount, and a request above the limit of the same resource. Caught here, not
 * when an install has already applied its first stages and the Deployment is refused.
 */
export function checkResources(raw: RawValues, at: At): void {
  for (const [path, w] of workloadsOf(raw)) {
    const r = (w as {resources?: {requests?: unknown; limits?: unknown}} | null | undefined)?.resources
    if (!r || typeof r !== 'object') continue
    const amounts = {requests: new Map<string, number>(), limits: new Map<string, number>()}
    for (const kind of ['requests', 'limits'] as const) {
      for (const [name, q] of entriesOf(r[kind])) {
        const n = parseQuantity(q)
        if (n === undefined) continue
        if (n < 0) at([...path, 'resources', kind, name], 'must not be negative')
        else amounts[kind].set(name, n)
      }
    }
    for (const [name, n] of amounts.requests) {
      const limit = amounts.limits.get(name)
      if (limit !== undefined && exceeds(n, limit)) at([...path, 'resources', 'requests', name], `more than its limit (limits.${name}); the apiserver refuses a request above its limit`)
    }
  }
}

// kpi's own namespaces too: a team's Namespace there would be rendered twice, and its RoleBinding
// (Secrets read and write) would hand the team cert-injection-webhook's serving key or kpi's records
const reservedNamespaces = new Set([KPACK_NAMESPACE, CERT_INJECTION_NS, REVISION_NAMESPACE, 'default', 'kube-system', 'kube-public', 'kube-node-lease'])

export function checkTeams(raw: RawValues, at: At): void {
  if (!Array.isArray(raw.teams)) return
  const names = new Map<string, number>()
  const namespaces = new Map<string, number>()
  raw.teams.forEach((t: unknown, i) => {
    if (!t || typeof t !== 'object') return
    const team = t as {name?: unknown; namespace?: unknown; builders?: unknown; subjects?: unknown}
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
    if (Array.isArray(team.subjects)) {
      // RBAC validates a ServiceAccount subject's name as a service account name (a User's or a
      // Group's is free): the username form system:serviceaccount:NS:NAME belongs in kind User
      team.subjects.forEach((s: unknown, j) => {
        const subject = s as {kind?: unknown; name?: unknown} | null
        const name = str(subject?.name)
        if (subject?.kind !== 'ServiceAccount' || !name) return
        if (name.length > 253 || !new RegExp(dnsSubdomain).test(name)) at(['teams', i, 'subjects', j, 'name'], `invalid value: expected ${patternMeaning[dnsSubdomain]} (a service account's name, with its namespace in namespace)`)
      })
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
