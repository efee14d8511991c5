/**
 * Finds the cluster the way kubectl does: --kubeconfig, else $KUBECONFIG (files joined by the path
 * separator, first one wins per entry), else ~/.kube/config, else the in-cluster service account;
 * then --context or the current context. Problems become one line naming the file or context.
 *
 * The files are read here, with the field names and checks of @kubernetes/client-node, and not by
 * that library: loading it costs every kpi command about 0.6 CPU-seconds (800 modules, 15 MB of
 * generated API code) before its first request. A context whose user needs code to get
 * credentials (an exec plugin, an auth provider, the in-cluster token file) or whose cluster
 * is behind proxy-url is handed to the library when the first request is made (http.ts).
 */
import {existsSync, readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {delimiter, dirname, isAbsolute, join} from 'node:path'
import {isIPv6} from 'node:net'
import {parse} from 'yaml'
import {KpiError} from '../errors.js'

export interface KubeTarget {
  /** path of a kubeconfig file (--kubeconfig); wins over $KUBECONFIG */
  kubeconfig?: string
  /** context name (--context); default: the kubeconfig's current context */
  context?: string
}

/** A cluster entry, as @kubernetes/client-node names its fields (KubeConfig.loadFromOptions takes these). */
export interface ClusterEntry {
  name: string
  server: string
  caData?: string
  caFile?: string
  skipTLSVerify: boolean
  tlsServerName?: string
  proxyUrl?: string
}

/** A user entry, as @kubernetes/client-node names its fields. */
export interface UserEntry {
  name: string
  authProvider?: {name: string; config?: Record<string, unknown>}
  exec?: Record<string, unknown>
  certData?: string
  certFile?: string
  keyData?: string
  keyFile?: string
  token?: string
  /** `token-file`, absolute: read (and trimmed, as kubectl does) only for the user of the chosen context */
  tokenFile?: string
  username?: string
  password?: string
  impersonateUser?: string
}

export interface ContextEntry {
  name: string
  cluster: string
  user: string
  namespace?: string
}

export interface LoadedKubeConfig {
  /** the API server URL of the chosen context */
  server: string
  context: string
  /** where the configuration came from, for messages (never holds a secret) */
  source: string
  cluster: ClusterEntry
  user: UserEntry
  /** every entry, for @kubernetes/client-node when the user needs it (needsLibrary) */
  all: {clusters: ClusterEntry[]; users: UserEntry[]; contexts: ContextEntry[]}
  /** credentials come from code (exec plugin, auth provider) or the cluster is behind a proxy */
  needsLibrary: boolean
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
const SA_TOKEN = `${SA_DIR}/token`

const hint = 'pass --kubeconfig FILE and --context NAME, or set $KUBECONFIG'

interface Parsed {
  clusters: ClusterEntry[]
  users: UserEntry[]
  contexts: ContextEntry[]
  currentContext?: string
}

export function loadKubeConfig(target: KubeTarget = {}, env: NodeJS.ProcessEnv = process.env): LoadedKubeConfig {
  let source: string
  let cfg: Parsed
  const files = target.kubeconfig ? [target.kubeconfig] : (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean)
  if (files.length) {
    for (const f of files) {
      if (!existsSync(f)) {
        throw new KpiError('input', `kubeconfig ${f} does not exist`, {hint: target.kubeconfig ? 'check the --kubeconfig path' : `fix $KUBECONFIG or ${hint}`})
      }
    }
    source = target.kubeconfig ? `--kubeconfig ${target.kubeconfig}` : `$KUBECONFIG (${files.join(delimiter)})`
    cfg = loadFiles(files)
  } else {
    const home = join(env.HOME || homedir(), '.kube', 'config')
    if (existsSync(home)) {
      source = home
      cfg = loadFiles([home])
    } else if (existsSync(SA_TOKEN)) {
      source = 'the in-cluster service account'
      cfg = inCluster(env)
    } else {
      throw new KpiError('input', `no kubeconfig: ${home} does not exist and $KUBECONFIG is not set`, {hint})
    }
  }
  let contextName = cfg.currentContext
  if (target.context) {
    if (!cfg.contexts.some((c) => c.name === target.context)) {
      const names = cfg.contexts.map((c) => c.name)
      throw new KpiError('usage', `--context ${target.context} is not a context of ${source}`, {
        hint: names.length ? `use one of: ${names.join(', ')}` : 'the kubeconfig has no contexts',
      })
    }
    contextName = target.context
  }
  const ctx = cfg.contexts.find((c) => c.name === contextName)
  const cluster = ctx && cfg.clusters.find((c) => c.name === ctx.cluster)
  if (!contextName || !cluster) {
    throw new KpiError('input', `${source} has no current context${contextName ? ` (context ${contextName} names no cluster)` : ''}`, {hint})
  }
  const named = cfg.users.find((u) => u.name === ctx!.user)
  if (!named) throw new KpiError('input', `context ${contextName} of ${source} names no user`, {hint})
  const user = withTokenFile(named, source)
  if (user !== named) cfg.users = cfg.users.map((u) => (u === named ? user : u))
  const needsLibrary = !!(user.exec || user.authProvider || cluster.proxyUrl)
  return {server: cluster.server, context: contextName, source, cluster, user, all: cfg, needsLibrary}
}

/** The user with the token of its `token-file` (when it has no `token`), read now. */
function withTokenFile(user: UserEntry, source: string): UserEntry {
  if (user.token || !user.tokenFile) return user
  let token: string
  try {
    // a token written with echo ends in a newline, which no HTTP header may carry
    token = readFileSync(user.tokenFile, 'utf8').trim()
  } catch (e) {
    throw new KpiError('input', `cannot read the token-file ${user.tokenFile} of user ${user.name} in ${source}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      hint: 'fix the path (a relative one is read from the kubeconfig\'s directory) or the file\'s permissions',
    })
  }
  if (!token) throw new KpiError('input', `the token-file ${user.tokenFile} of user ${user.name} in ${source} is empty`, {hint: 'write the ServiceAccount or user token into it'})
  return {...user, token}
}

/** The first file's current context; entries merged by name, the first file that has one wins. */
function loadFiles(files: string[]): Parsed {
  try {
    const [first, ...more] = files.map(parseFile)
    for (const m of more) {
      for (const k of ['clusters', 'users', 'contexts'] as const) {
        const have = new Set(first![k].map((e) => e.name))
        for (const e of m[k]) if (!have.has(e.name)) (first![k] as Array<{name: string}>).push(e)
      }
      first!.currentContext ??= m.currentContext
    }
    return first!
  } catch (e) {
    throw new KpiError('input', `cannot load kubeconfig ${files.join(delimiter)}: ${(e as Error).message.split('\n')[0]}`, {hint})
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined)
const abs = (dir: string, f: string | undefined) => (f && !isAbsolute(f) ? join(dir, f) : f)

function parseFile(file: string): Parsed {
  const doc = (parse(readFileSync(file, 'utf8')) ?? {}) as Record<string, unknown>
  const dir = dirname(file)
  const list = (k: string) => (Array.isArray(doc[k]) ? (doc[k] as Array<Record<string, unknown>>) : [])
  const clusters = list('clusters').map((e, i): ClusterEntry => {
    const c = e.cluster as Record<string, unknown> | undefined
    if (!e.name) throw new Error(`clusters[${i}].name is missing`)
    if (!c) throw new Error(`clusters[${i}].cluster is missing`)
    if (!c.server) throw new Error(`clusters[${i}].cluster.server is missing`)
    return {
      name: String(e.name), server: String(c.server).replace(/\/$/, ''), caData: str(c['certificate-authority-data']), caFile: abs(dir, str(c['certificate-authority'])),
      skipTLSVerify: c['insecure-skip-tls-verify'] === true, tlsServerName: str(c['tls-server-name']), proxyUrl: str(c['proxy-url']),
    }
  })
  const users = list('users').map((e, i): UserEntry => {
    if (!e.name) throw new Error(`users[${i}].name is missing`)
    const u = (e.user ?? {}) as Record<string, unknown>
    const tokenFile = str(u['token-file'])
    return {
      name: String(e.name), authProvider: (u['auth-provider'] as UserEntry['authProvider']) ?? undefined, exec: (u.exec as Record<string, unknown>) ?? undefined,
      certData: str(u['client-certificate-data']), certFile: abs(dir, str(u['client-certificate'])), keyData: str(u['client-key-data']), keyFile: abs(dir, str(u['client-key'])),
      token: str(u.token), tokenFile: abs(dir, tokenFile), username: str(u.username), password: str(u.password), impersonateUser: str(u.as),
    }
  })
  const contexts = list('contexts').map((e, i): ContextEntry => {
    if (!e.name) throw new Error(`contexts[${i}].name is missing`)
    const c = e.context as Record<string, unknown> | undefined
    if (!c) throw new Error(`contexts[${i}].context is missing`)
    return {name: String(e.name), cluster: String(c.cluster ?? ''), user: String(c.user ?? ''), namespace: str(c.namespace)}
  })
  return {clusters, users, contexts, currentContext: str(doc['current-context'])}
}

/** The pod's service account; its token file rotates, so it is read per request (by the library). */
function inCluster(env: NodeJS.ProcessEnv): Parsed {
  const host = env.KUBERNETES_SERVICE_HOST ?? ''
  const port = env.KUBERNETES_SERVICE_PORT ?? ''
  const scheme = ['80', '8080', '8001'].includes(port) ? 'http' : 'https'
  const server = `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`
  return {
    clusters: [{name: 'inCluster', server, caFile: `${SA_DIR}/ca.crt`, skipTLSVerify: false}],
    users: [{name: 'inClusterUser', authProvider: {name: 'tokenFile', config: {tokenFile: SA_TOKEN}}}],
    contexts: [{name: 'inClusterContext', cluster: 'inCluster', user: 'inClusterUser'}],
    currentContext: 'inClusterContext',
  }
}
