/**
 * Registry credentials, found the way docker finds them: `$DOCKER_CONFIG/config.json` (or
 * `~/.docker/config.json`) with `auths`, `credsStore` and `credHelpers`
 * (`docker-credential-<name> get`), plus `KPI_REGISTRY_*` environment variables and an explicit
 * map from flags. Secrets are returned to the caller and never put in messages.
 */
import {spawn} from 'node:child_process'
import {readFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {KpiError} from '../errors.js'
import {memoAsync} from '../pool.js'
import {DOCKER_HUB, normaliseRegistry} from './reference.js'
import type {Credentials} from './types.js'

/** The key docker uses for Docker Hub in config.json and when asking helpers. */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/'

export interface DockerAuthEntry {
  auth?: string
  username?: string
  password?: string
  identitytoken?: string
  registrytoken?: string
}

export interface DockerConfig {
  auths?: Record<string, DockerAuthEntry>
  credsStore?: string
  credHelpers?: Record<string, string>
}

export interface CredentialOptions {
  /** credentials given on the command line, keyed by registry host; they win */
  explicit?: Record<string, Credentials>
  /** environment to read DOCKER_CONFIG, HOME and KPI_REGISTRY_* from (default process.env) */
  env?: NodeJS.ProcessEnv
  /** directory holding config.json (default $DOCKER_CONFIG or ~/.docker) */
  configDir?: string
  /** skip the docker config entirely */
  noDockerConfig?: boolean
  /**
   * The one registry KPI_REGISTRY_USERNAME/PASSWORD without a KPI_REGISTRY_HOSTNAME are for (the
   * registry the command writes to). Unset: they are for none, so a password meant for the
   * customer's registry never goes to a public one (or its token server) the images come from.
   */
  unscopedEnvFor?: string
}

/** Docker's ConvertToHostname: drop the scheme and any path, so `https://h:5000/v1/` is `h:5000`. */
export function registryKeyHost(key: string): string {
  let s = key.trim()
  if (s.startsWith('http://')) s = s.slice(7)
  else if (s.startsWith('https://')) s = s.slice(8)
  const slash = s.indexOf('/')
  return normaliseRegistry(slash === -1 ? s : s.slice(0, slash))
}

const sameRegistry = (key: string, registry: string): boolean =>
  registryKeyHost(key).toLowerCase() === normaliseRegistry(registry).toLowerCase()

export function dockerConfigFile(opts: CredentialOptions = {}): string {
  const env = opts.env ?? process.env
  const dir = opts.configDir ?? env.DOCKER_CONFIG ?? join(env.HOME || homedir(), '.docker')
  return join(dir, 'config.json')
}

/** Read the docker config; a missing file is an empty config, an unreadable one an input error. */
export async function readDockerConfig(file: string): Promise<DockerConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new KpiError('input', `cannot read docker config ${file}: ${(e as Error).message}`)
  }
  try {
    return parseDockerConfig(text)
  } catch (e) {
    throw new KpiError('input', `docker config ${file} is not valid JSON (${(e as Error).message})`, {hint: 'fix the file or run docker login again'})
  }
}

/**
 * The one parser of docker config JSON (a user's config.json, or the one a values file carries for
 * the cluster). Throws a plain Error saying what is wrong, never quoting the text (it holds secrets).
 */
export function parseDockerConfig(text: string): DockerConfig {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new Error('not valid JSON')
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object')
  return parsed as DockerConfig
}

/** The `auths` entry for a registry, matched as docker matches keys (`https://h:5000/v1/` is `h:5000`). */
export const authEntryFor = (cfg: DockerConfig, registry: string): DockerAuthEntry | undefined =>
  cfg.auths && typeof cfg.auths === 'object' && !Array.isArray(cfg.auths) ? findKey(cfg.auths, registry) : undefined

/**
 * Per-registry credentials from the `auths` of a docker config text; a missing or unparsable text
 * has none (values checks report why when the values are read).
 */
export function dockerConfigCredentials(text: string | undefined, source: string): (registry: string) => Credentials | undefined {
  let cfg: DockerConfig = {}
  try {
    if (text) cfg = parseDockerConfig(text)
  } catch {
    cfg = {}
  }
  return (registry) => {
    const entry = authEntryFor(cfg, registry)
    const c = entry ? entryCredentials(entry) : undefined
    return c ? {...c, source} : undefined
  }
}

/** An `auths` entry's credentials: `auth` (base64 user:password) decoded, explicit fields winning. */
export function entryCredentials(e: DockerAuthEntry): Credentials | undefined {
  const c: Credentials = {}
  if (e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8')
    const i = decoded.indexOf(':')
    if (i > 0) {
      c.username = decoded.slice(0, i)
      c.password = decoded.slice(i + 1)
    }
  }
  if (e.username) c.username = e.username
  if (e.password) c.password = e.password
  if (e.identitytoken) c.identityToken = e.identitytoken
  if (e.registrytoken) c.registryToken = e.registrytoken
  return c.username || c.password || c.identityToken || c.registryToken ? c : undefined
}

function findKey<T>(map: Record<string, T> | undefined, registry: string): T | undefined {
  if (!map) return undefined
  if (map[registry] !== undefined) return map[registry]
  for (const [k, v] of Object.entries(map)) if (sameRegistry(k, registry)) return v
  return undefined
}

/**
 * Run `docker-credential-<helper> get` with the server on stdin. Undefined when the helper has
 * nothing for this server; a KpiError('auth') when the helper is missing or fails otherwise.
 */
export async function runCredentialHelper(helper: string, registry: string, env: NodeJS.ProcessEnv = process.env): Promise<Credentials | undefined> {
  const program = `docker-credential-${helper}`
  const server = normaliseRegistry(registry) === DOCKER_HUB ? DOCKER_HUB_KEY : registry
  const {code, stdout, stderr, spawnError} = await new Promise<{code: number | null; stdout: string; stderr: string; spawnError?: Error}>((resolve) => {
    const child = spawn(program, ['get'], {env, stdio: ['pipe', 'pipe', 'pipe']})
    // not spawn's own `timeout`: when the program is missing no exit event clears it, and the
    // whole kpi process stayed alive for its full length after reporting the error
    const timer = setTimeout(() => child.kill('SIGTERM'), 60_000)
    timer.unref()
    const done = (r: {code: number | null; stdout: string; stderr: string; spawnError?: Error}) => {
      clearTimeout(timer)
      resolve(r)
    }
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    child.on('error', (e) => done({code: null, stdout: out, stderr: err, spawnError: e}))
    child.on('close', (c) => done({code: c, stdout: out, stderr: err}))
    child.stdin.on('error', () => {})
    child.stdin.end(server)
  })
  if (spawnError) {
    const missing = (spawnError as NodeJS.ErrnoException).code === 'ENOENT'
    throw new KpiError('auth', missing
      ? `docker credential helper ${program} (configured for ${registry}) is not on PATH`
      : `docker credential helper ${program} could not run for ${registry}: ${spawnError.message}`,
    {hint: 'install the helper or remove it from credHelpers/credsStore in the docker config'})
  }
  if (code !== 0) {
    // helpers print "credentials not found in native keychain" when they have no entry
    if (/credentials not found/i.test(stdout + stderr)) return undefined
    // only the first line of stderr: a helper's diagnostics, never its stdout (which could hold a secret)
    const why = stderr.trim().split('\n')[0]?.slice(0, 200) || `exit code ${code}`
    throw new KpiError('auth', `docker credential helper ${program} failed for ${registry}: ${why}`, {hint: 'run the helper by hand or docker login again'})
  }
  let parsed: {Username?: string; Secret?: string}
  try {
    parsed = JSON.parse(stdout) as {Username?: string; Secret?: string}
  } catch {
    throw new KpiError('auth', `docker credential helper ${program} printed something that is not JSON for ${registry}`)
  }
  if (!parsed.Secret) return undefined
  // docker's convention: a username of <token> means the secret is an identity (refresh) token
  const source = `docker credential helper ${program}`
  if (parsed.Username === '<token>') return {identityToken: parsed.Secret, source}
  return {username: parsed.Username, password: parsed.Secret, source}
}

type EnvSet = {username?: string; password?: string; hostname?: string}

function envSets(env: NodeJS.ProcessEnv): EnvSet[] {
  const sets = new Map<string, EnvSet>()
  for (const [k, v] of Object.entries(env)) {
    const m = /^KPI_REGISTRY_(USERNAME|PASSWORD|HOSTNAME)(_\w+)?$/.exec(k)
    if (!m || v === undefined) continue
    const key = m[2] ?? ''
    const set = sets.get(key) ?? {}
    set[m[1]!.toLowerCase() as 'username' | 'password' | 'hostname'] = v
    sets.set(key, set)
  }
  return [...sets.values()].filter((s) => s.username !== undefined && s.password !== undefined)
}

/** whether the environment holds a KPI_REGISTRY_USERNAME/PASSWORD set with no KPI_REGISTRY_HOSTNAME */
export const hasUnscopedEnvCredentials = (env: NodeJS.ProcessEnv = process.env): boolean => envSets(env).some((s) => !s.hostname)

/**
 * KPI_REGISTRY_USERNAME/PASSWORD[/HOSTNAME], optionally with a suffix (`_1`, `_DEST`) per set. A
 * set with a hostname is for that registry; a set without one only for `unscopedFor`.
 */
export function envCredentials(registry: string, env: NodeJS.ProcessEnv = process.env, unscopedFor?: string): Credentials | undefined {
  const source = 'KPI_REGISTRY_USERNAME/KPI_REGISTRY_PASSWORD'
  const sets = envSets(env)
  const scoped = sets.find((s) => s.hostname && sameRegistry(s.hostname, registry))
  if (scoped) return {username: scoped.username, password: scoped.password, source}
  if (unscopedFor === undefined || !sameRegistry(unscopedFor, registry)) return undefined
  const unscoped = sets.find((s) => !s.hostname)
  return unscoped && {username: unscoped.username, password: unscoped.password, source}
}

/**
 * Credentials for one registry: explicit map, then the environment, then the docker config
 * (credHelpers entry, then auths, then credsStore). Undefined means anonymous.
 */
export async function credentialsFor(registry: string, opts: CredentialOptions = {}): Promise<Credentials | undefined> {
  const explicit = findKey(opts.explicit, registry)
  if (explicit) return {source: 'the credentials given on the command line', ...explicit}
  const env = opts.env ?? process.env
  const fromEnv = envCredentials(registry, env, opts.unscopedEnvFor)
  if (fromEnv) return fromEnv
  if (opts.noDockerConfig) return undefined
  const file = dockerConfigFile(opts)
  const cfg = await readDockerConfig(file)
  const helper = findKey(cfg.credHelpers, registry)
  if (helper) return runCredentialHelper(helper, registry, env)
  const entry = findKey(cfg.auths, registry)
  const fromFile = entry ? entryCredentials(entry) : undefined
  if (fromFile) return {...fromFile, source: `docker config ${file}`}
  if (cfg.credsStore) return runCredentialHelper(cfg.credsStore, registry, env)
  return undefined
}

/** A memoised `credentialsFor`, so helpers run once per registry per client. */
export function credentialResolver(opts: CredentialOptions = {}): (registry: string) => Promise<Credentials | undefined> {
  return memoAsync((registry) => credentialsFor(registry, opts), (registry) => normaliseRegistry(registry).toLowerCase())
}
