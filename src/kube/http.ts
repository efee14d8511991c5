/**
 * Raw JSON requests to the API server. TLS material, a token, basic auth and impersonation come
 * from the kubeconfig as config.ts read it, once; a user whose credentials come from code (exec
 * plugin, auth provider) or a cluster behind proxy-url is served by @kubernetes/client-node,
 * loaded only then (it is heavy), which applies them per request. The bodies are sent and read as
 * plain JSON because the library's generated typed models drop every field they do not know when
 * they serialise, which would silently strip fields of objects kpi applies.
 */
import {readFileSync} from 'node:fs'
import {StringDecoder} from 'node:string_decoder'
import {Agent, request} from 'node:https'
import {request as httpRequest, Agent as HttpAgent, type IncomingHttpHeaders} from 'node:http'
import {KpiError} from '../errors.js'
import type {LoadedKubeConfig} from './config.js'

export interface KubeResponse<T = unknown> {
  status: number
  body: T
  headers: IncomingHttpHeaders
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>
  body?: unknown
  contentType?: string
  /** milliseconds; the whole request (default 30 s) */
  timeoutMs?: number
  /** a 200 answer's body is handed over line by line as it comes (a watch), not kept */
  onLine?: (line: string) => void
  signal?: AbortSignal
}

export type Requester = <T = unknown>(method: string, path: string, opts?: RequestOptions) => Promise<KubeResponse<T>>

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'ERR_SSL_WRONG_VERSION_NUMBER',
])

/** Maps a socket error of a request to the cluster to a KpiError naming the server. */
export function transportError(e: unknown, server: string): KpiError {
  const code = (e as NodeJS.ErrnoException).code
  const kubeHint = 'check --kubeconfig and --context (or $KUBECONFIG) and that the cluster is running'
  if (code && TLS_CODES.has(code)) {
    return new KpiError('tls', `cannot verify the TLS certificate of the Kubernetes API at ${server} (${code})`, {
      hint: 'the kubeconfig must carry the cluster CA (certificate-authority-data)', cause: e,
    })
  }
  const why = code ?? (e as Error).message
  return new KpiError('network', `cannot reach the Kubernetes API at ${server} (${why})`, {hint: kubeHint, cause: e})
}

type HttpsOptions = Record<string, unknown> & {headers?: Record<string, unknown>; auth?: string; agent?: unknown}

/** `*-data` over the file it stands beside, as kubectl ("certificate-authority-data will override") */
function dataOrFile(file: string | undefined, data: string | undefined, field: string): Buffer | undefined {
  if (data) return Buffer.from(data, 'base64')
  if (!file) return undefined
  try {
    return readFileSync(file)
  } catch (e) {
    throw new KpiError('input', `cannot read the ${field} file ${file} of the kubeconfig: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      hint: `fix the path (a relative one is read from the kubeconfig's directory), or embed it as ${field}-data`,
    })
  }
}

/** What @kubernetes/client-node's applyToHTTPSOptions sets for a user without exec or auth provider, read once. */
function staticOptions(k: LoadedKubeConfig): HttpsOptions {
  const {cluster, user} = k
  const o: HttpsOptions = {headers: {}}
  if (cluster.skipTLSVerify) o.rejectUnauthorized = false
  if (cluster.tlsServerName) o.servername = cluster.tlsServerName
  const ca = dataOrFile(cluster.caFile, cluster.caData, 'certificate-authority')
  if (ca) o.ca = ca
  const cert = dataOrFile(user.certFile, user.certData, 'client-certificate')
  if (cert) o.cert = cert
  const key = dataOrFile(user.keyFile, user.keyData, 'client-key')
  if (key) o.key = key
  if (user.impersonateUser) o.headers!['Impersonate-User'] = user.impersonateUser
  if (user.token) o.headers!.Authorization = `Bearer ${user.token}`
  if (user.username) o.auth = `${user.username}:${user.password}`
  return o
}

/** Per request, through @kubernetes/client-node: exec plugins' and auth providers' tokens expire. */
async function libraryOptions(k: LoadedKubeConfig): Promise<() => Promise<HttpsOptions>> {
  const {KubeConfig} = await import('@kubernetes/client-node')
  const kc = new KubeConfig()
  kc.loadFromOptions({...k.all, currentContext: k.context} as Parameters<typeof kc.loadFromOptions>[0])
  return async () => {
    const o: HttpsOptions = {}
    await kc.applyToHTTPSOptions(o)
    return o
  }
}

/** `graceMs`: how long a request rides out an unavailable API server or webhook (see riding) */
export async function createRequester(k: LoadedKubeConfig, graceMs = API_UNAVAILABLE_GRACE_MS): Promise<{request: Requester; close(): void}> {
  const cluster = k.cluster
  const server = cluster.server.replace(/\/+$/, '')
  const base = new URL(server)
  const fixed = k.needsLibrary ? undefined : staticOptions(k)
  const options = fixed ? async () => fixed : await libraryOptions(k)
  // TLS material is fixed for the session: one keep-alive agent, so hundreds of small requests reuse connections
  const first = await options()
  const useOwnAgent = !cluster.proxyUrl
  const tls = {ca: first.ca, cert: first.cert, key: first.key, rejectUnauthorized: first.rejectUnauthorized as boolean | undefined, servername: first.servername as string | undefined}
  const agent = base.protocol === 'https:' ? new Agent({...tls, keepAlive: true, maxSockets: 16} as ConstructorParameters<typeof Agent>[0]) : new HttpAgent({keepAlive: true, maxSockets: 16})

  const doRequest: Requester = async <T>(method: string, path: string, opts: RequestOptions = {}) => {
    // headers per request: tokens from exec plugins and auth providers expire
    let o: HttpsOptions
    try {
      o = await options()
    } catch (e) {
      throw new KpiError('auth', `cannot get credentials for the Kubernetes API at ${server}: ${(e as Error).message.split('\n')[0]}`, {
        hint: 'check the user of the kubeconfig context (exec plugin, token)', cause: e,
      })
    }
    const url = new URL(base.pathname.replace(/\/$/, '') + path, base)
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    const body = opts.body === undefined ? undefined : Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body))
    const headers: Record<string, string> = {accept: 'application/json', 'user-agent': 'kpi'}
    for (const [k, v] of Object.entries(o.headers ?? {})) if (typeof v === 'string') headers[k] = v
    if (o.auth) headers.authorization = `Basic ${Buffer.from(o.auth).toString('base64')}`
    if (body) {
      headers['content-type'] = opts.contentType ?? 'application/json'
      headers['content-length'] = String(body.length)
    }
    const send = url.protocol === 'https:' ? request : httpRequest
    return new Promise<KubeResponse<T>>((resolve, reject) => {
      const reqOpts = {method, headers, agent: (useOwnAgent ? agent : o.agent) as Agent, ...(useOwnAgent ? {} : tls), ...(opts.signal ? {signal: opts.signal} : {})} as Parameters<typeof request>[1]
      const req = send(url, reqOpts, (res) => {
        const chunks: Buffer[] = []
        const lines = res.statusCode === 200 ? opts.onLine : undefined
        let partial = ''
        // a character split between two chunks is put together again
        const text = new StringDecoder('utf8')
        res.on('data', (c: Buffer) => {
          if (!lines) return void chunks.push(c)
          const parts = (partial + text.write(c)).split('\n')
          partial = parts.pop()!
          for (const l of parts) if (l) lines(l)
        })
        res.on('error', (e) => reject(transportError(e, server)))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown = text
          if (text && /json/.test(res.headers['content-type'] ?? '')) {
            try {
              parsed = JSON.parse(text)
            } catch {
              // keep the text: the caller reports it
            }
          }
          resolve({status: res.statusCode ?? 0, body: parsed as T, headers: res.headers})
        })
      })
      req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(Object.assign(new Error('timed out'), {code: 'ETIMEDOUT'})))
      req.on('error', (e) => reject(transportError(e, server)))
      req.end(body)
    })
  }
  return {request: riding(doRequest, graceMs), close: () => agent.destroy()}
}

/**
 * How long a request rides out an API server that is restarting (a control-plane upgrade, a
 * crash): kpi keeps asking for this long after the first try before it reports the API unreachable.
 */
export const API_UNAVAILABLE_GRACE_MS = 30_000

/**
 * Methods a second send cannot harm: reads, server-side apply, deletes (a repeat answers 404). Not
 * a resourceVersion-guarded PUT: when the first was written and only its answer was lost, the
 * repeat answers 409 as if another writer had come between (revision records, the lease).
 */
const REPEATABLE = new Set(['GET', 'HEAD', 'PATCH', 'DELETE'])

/**
 * Whether the request met an API server that is going away or coming back, and may be sent again:
 * a refused connection never reached it (any method); a dropped connection or a 503 ("apiserver is
 * shutting down") or 429 (Retry-After) is sent again only where a repeat is harmless. `recovering`:
 * this server was just unavailable, and one that has just started answers 500 for a while too
 * (its caches still filling: "failed to allocate a serviceIP: range is full").
 */
function unavailable(method: string, e: unknown, res: KubeResponse | undefined, recovering: boolean): boolean {
  if (res) {
    const message = typeof res.body === 'object' ? String((res.body as {message?: unknown})?.message ?? '') : ''
    const shuttingDown = /shutting down/i.test(message)
    return res.status === 429 || res.status === 503 || shuttingDown || webhookUnreachable(res.status, message) ||
      (recovering && res.status === 500 && REPEATABLE.has(method))
  }
  const code = ((e as KpiError).cause as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ECONNREFUSED') return true
  return REPEATABLE.has(method) && (code === 'ECONNRESET' || code === 'EPIPE')
}

/**
 * An admission webhook the API server could not call (its pod rolling, its endpoints not yet
 * updated, its certificate not yet in the configuration): the API server answers 500 "failed
 * calling webhook" before it stores anything, so any method may be sent again. kpack's webhook
 * rolls during a kpack upgrade, and the next stage's objects go through it. A webhook that denies
 * answers 400/403/422 ("denied the request") and is never repeated.
 */
const webhookUnreachable = (status: number, message: string) => status === 500 && /failed calling webhook/i.test(message)

/**
 * A kube-apiserver that restarts refuses connections, cuts the open ones and answers 503 for a few
 * seconds, then 500 while it starts; an install or upgrade that failed on the first such answer
 * would stop half-applied (and its automatic rollback, started at once, would meet the same
 * outage). So a request that meets one is sent again, pausing 250 ms doubling to 2 s, for up to
 * API_UNAVAILABLE_GRACE_MS, once this API server has answered in this run (a wrong address is
 * reported at once, as kubectl does). An unreachable admission webhook is waited for as long. Any
 * other 500 is waited out only within the grace after an outage: otherwise it is the server's
 * answer, reported at once.
 */
export function riding(send: Requester, graceMs = API_UNAVAILABLE_GRACE_MS): Requester {
  // only an API server that answered once is waited for: a kubeconfig naming nothing fails at once
  let answered = false
  let outageSeen = -Infinity
  return async <T>(method: string, path: string, opts: RequestOptions = {}): Promise<KubeResponse<T>> => {
    const until = Date.now() + graceMs
    for (let pause = 250; ; pause = Math.min(2000, pause * 2)) {
      const recovering = Date.now() < outageSeen + graceMs
      let res: KubeResponse<T> | undefined
      try {
        res = await send<T>(method, path, opts)
        answered = true
      } catch (e) {
        if (!answered || !unavailable(method, e, undefined, recovering)) throw e
        outageSeen = Date.now()
        if (Date.now() + pause > until) throw e
      }
      if (res) {
        if (!unavailable(method, undefined, res, recovering)) return res
        if (res.status !== 500) outageSeen = Date.now()
        if (Date.now() + pause > until) return res
      }
      // a request its caller stopped (a gate's watch, the gate over) waits out no outage
      opts.signal?.throwIfAborted()
      await new Promise<void>((r) => {
        const done = () => {
          clearTimeout(t)
          opts.signal?.removeEventListener('abort', done)
          r()
        }
        const t = setTimeout(done, pause)
        opts.signal?.addEventListener('abort', done, {once: true})
      })
      opts.signal?.throwIfAborted()
    }
  }
}
