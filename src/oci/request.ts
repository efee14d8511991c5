/**
 * The request layer every registry operation goes through (go-containerregistry's
 * `remote/transport`): connections and TLS (transport.ts), one probe of `/v2/` per registry to
 * learn how it authenticates, a cached token or basic credentials per request, one
 * re-authentication on 401, and retries of idempotent requests with replayable bodies.
 */
import type {Readable} from 'node:stream'
import type {Dispatcher} from 'undici'
import {KpiError} from '../errors.js'
import {memoAsync} from '../pool.js'
import {Authenticator, refusedError, userOf} from './auth.js'
import {credentialResolver} from './dockerconfig.js'
import {readErrorBody, registryError, type ErrorContext} from './registry-errors.js'
import {defaultRetryPolicy, withRetry, type RetryPolicy} from './retry.js'
import {connectionPolicy, createDispatcher, DEFAULT_REGISTRY_TIMEOUT_MS, isLoopbackRegistry, mapTransportError, registryBaseUrl, servesPlainHttp, type ProxyOptions} from './transport.js'
import {createWire, type Method} from './wire.js'
import type {ClientOptions, Repo} from './types.js'

export interface RequestOptions extends ClientOptions {
  /** proxy settings instead of HTTP_PROXY/HTTPS_PROXY/NO_PROXY */
  proxy?: ProxyOptions
  /** backoff tuning (tests shorten it) */
  retryPolicy?: Partial<RetryPolicy>
}

export type Body = Buffer | string | Readable | undefined
export type {Method}

export interface Req {
  method: Method
  url: string
  scopes: string[]
  headers?: Record<string, string>
  body?: Body
  /** retry on 429/5xx/resets; only for idempotent requests with a replayable body */
  retry?: boolean
}

/** How a request without registry credentials is sent (Requester.raw). */
export interface RawOptions {
  /** what the request is for, named in errors: a registry or a storage host */
  where: string
  /** as Req.retry; a body that cannot be replayed is sent once whatever this says */
  retry?: boolean
}

/** What the operation modules (manifests, blobs, referrers, tags) build on. */
export interface Requester {
  policy: RetryPolicy
  /** `https://host[:port]` of a registry's API */
  base(registry: string): string
  repoUrl(repo: Repo, rest: string): string
  /** one authenticated request to a registry: retried when idempotent, re-authenticated once on 401 */
  send(registry: string, req: Req): Promise<Dispatcher.ResponseData>
  /** a request without registry credentials (storage a registry redirects to, the /v2/ probe) */
  raw(url: string, method: Method, headers: Record<string, string>, body: Body, o: RawOptions): Promise<Dispatcher.ResponseData>
  /** checks the credentials for a registry now rather than at the first operation */
  ping(registry: string): Promise<void>
  /** opens connections for blob bodies (uploads) to a registry ahead of the requests: see RegistryClient.preconnect */
  preconnect(registry: string, count: number): void
  /** wire.ts's quickestAnswerMs for `url`'s origin; Infinity through a proxy (not measured) */
  quickestAnswerMs(url: string): number
  close(): Promise<void>
}

export const replayable = (b: Body): boolean => b === undefined || typeof b === 'string' || Buffer.isBuffer(b)

/** Discard a response body (its socket goes back to the pool). */
export const dump = async (res: Dispatcher.ResponseData): Promise<void> => {
  try {
    await res.body.dump()
  } catch {
    // the response is discarded anyway
  }
}

export const header = (res: Dispatcher.ResponseData, name: string): string | undefined => {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Whether `url` has the origin (scheme, host and port) of `base`, a registry's API base URL. */
export const sameOrigin = (url: string, base: string): boolean => new URL(url).origin === new URL(base).origin

/**
 * The refusal to send a registry's credentials to another origin. Only the origin is named: a
 * URL a registry hands out may carry a signature in its query.
 */
export function foreignOriginError(registry: string, url: string, what: string): KpiError {
  return new KpiError('failed', `registry ${registry} sent kpi to ${new URL(url).origin} for ${what}, another origin than the registry's; kpi sends the registry's credentials to the registry alone`, {
    hint: 'the registry (or a proxy in front of it) must serve this on its own address; check the registry address, whether it is plain HTTP, and any proxy rewriting its answers',
  })
}

/** `type/subtype; charset=...` -> `type/subtype` */
export const bareType = (ct: string | undefined): string | undefined => ct?.split(';')[0]?.trim() || undefined

/** Throw the KpiError for a response the operation did not expect. */
export async function fail(res: Dispatcher.ResponseData, ctx: ErrorContext): Promise<never> {
  throw registryError(res.statusCode, await readErrorBody(res), ctx)
}

/** A whole (small) body, refused past `limit` bytes rather than held in memory. */
export async function readLimited(res: Dispatcher.ResponseData, limit: number, what: string): Promise<Buffer> {
  const declared = Number(header(res, 'content-length'))
  if (Number.isFinite(declared) && declared > limit) {
    res.body.destroy()
    throw new KpiError('failed', `${what} is ${declared} bytes, more than the ${limit} a manifest may have`)
  }
  const chunks: Buffer[] = []
  let n = 0
  try {
    for await (const chunk of res.body) {
      n += (chunk as Buffer).length
      if (n > limit) {
        res.body.destroy()
        throw new KpiError('failed', `${what} is more than the ${limit} bytes a manifest may have`)
      }
      chunks.push(chunk as Buffer)
    }
  } catch (e) {
    throw mapTransportError(e, what)
  }
  return Buffer.concat(chunks)
}

export function createRequester(opts: RequestOptions = {}): Requester {
  const userAgent = opts.userAgent ?? 'kpi'
  const transport = {
    caCerts: opts.caCerts, insecureSkipTlsVerify: opts.insecureSkipTlsVerify, insecureRegistry: opts.insecureRegistry,
    connections: opts.connections, proxy: opts.proxy, timeoutMs: opts.timeoutMs,
  }
  const route = connectionPolicy(transport)
  const wire = createWire({userAgent, timeoutMs: opts.timeoutMs ?? DEFAULT_REGISTRY_TIMEOUT_MS, tls: route.tlsFor})
  // undici, only for hosts a proxy is in the way of (wire.ts speaks no proxy protocol)
  let dispatcher: Dispatcher | undefined

  /** One exchange: over wire.ts to a host reached directly, else through the proxy. Errors unmapped. */
  function exchange(u: URL, method: Method, headers: Record<string, string>, body: Body): Promise<Dispatcher.ResponseData> {
    // the operations read statusCode, headers and a body with dump() and text(), as undici's
    if (route.direct(u.host)) return wire.request({method, url: u, headers, body}) as unknown as Promise<Dispatcher.ResponseData>
    dispatcher ??= createDispatcher(transport, route)
    return dispatcher.request({
      origin: u.origin, path: u.pathname + u.search, method, headers: {'user-agent': userAgent, ...headers},
      body: body as Dispatcher.DispatchOptions['body'],
      // undici closes the connection after every HEAD unless told otherwise; relocation is
      // mostly HEADs, and a new TLS connection per HEAD made it several times slower
      reset: false,
    })
  }
  // helpers run once per registry, failures retried
  const credentials = memoAsync(opts.credentials ?? credentialResolver())
  const policy: RetryPolicy = {...defaultRetryPolicy, ...opts.retryPolicy, ...(opts.retries !== undefined ? {retries: opts.retries} : {})}
  const plainHttp = opts.plainHttp ?? (() => false)
  const auth = new Authenticator({request: exchange, credentials, userAgent, plainAllowed: (host) => plainHttp(host) || isLoopbackRegistry(host), retryPolicy: policy})
  // loopback registries found to answer plain HTTP (go-containerregistry and docker fall back the same way)
  const learnedPlain = new Set<string>()
  const isPlain = (registry: string): boolean => plainHttp(registry) || learnedPlain.has(registry)

  const base = (registry: string): string => registryBaseUrl(registry, isPlain(registry))
  const repoUrl = (repo: Repo, rest: string): string => `${base(repo.registry)}/v2/${repo.repository}/${rest}`

  async function once(url: string, method: Method, headers: Record<string, string>, body: Body, where: string): Promise<Dispatcher.ResponseData> {
    const u = new URL(url)
    try {
      return await exchange(u, method, headers, body)
    } catch (e) {
      throw mapTransportError(e, where, u.host)
    }
  }

  async function raw(url: string, method: Method, headers: Record<string, string>, body: Body, {where, retry = false}: RawOptions): Promise<Dispatcher.ResponseData> {
    if (!retry || !replayable(body)) return once(url, method, headers, body, where)
    try {
      return await withRetry(() => once(url, method, headers, body, where), policy, dump)
    } catch (e) {
      throw mapTransportError(e, where)
    }
  }

  /** GET /v2/ once per registry to learn whether and how it wants authentication (again after a failure). */
  const probe = memoAsync(async (registry: string): Promise<void> => {
    let res: Dispatcher.ResponseData
    try {
      res = await raw(`${base(registry)}/v2/`, 'GET', {}, undefined, {where: registry, retry: true})
    } catch (e) {
      if (isPlain(registry) || !isLoopbackRegistry(registry) || !servesPlainHttp(e)) throw e
      learnedPlain.add(registry)
      opts.onPlainHttp?.(registry)
      res = await raw(`${base(registry)}/v2/`, 'GET', {}, undefined, {where: registry, retry: true})
    }
    if (res.statusCode === 401) {
      auth.learn(registry, res.headers['www-authenticate'])
      await dump(res)
      return
    }
    if (res.statusCode >= 200 && res.statusCode < 300) {
      await dump(res)
      return
    }
    const text = await readErrorBody(res)
    if (res.statusCode === 400 && /HTTPS server/i.test(text)) {
      throw new KpiError('tls', `registry ${registry} speaks HTTPS, but was addressed over plain HTTP`, {hint: 'do not mark this registry as plain HTTP'})
    }
    if (res.statusCode === 404) {
      throw new KpiError('failed', `${registry} does not serve the registry API (GET /v2/ answered 404)`, {hint: 'check the registry address'})
    }
    throw registryError(res.statusCode, text, {registry, subject: `the API root of ${registry}`, action: 'pull'})
  })

  async function unauthorized(registry: string, sent: string | undefined, scopes: string[]): Promise<KpiError> {
    const creds = await credentials(registry)
    if (!sent || !creds || sent.startsWith('Basic ')) return refusedError(registry, sent ? creds : undefined)
    const what = scopes.map((s) => s.replace(/^repository:/, '')).join(', ')
    return new KpiError('auth', `registry ${registry} did not grant ${userOf(creds)} access to ${what}`, {
      hint: 'check that the user may pull (and push) these repositories',
    })
  }

  async function send(registry: string, req: Req): Promise<Dispatcher.ResponseData> {
    await probe(registry)
    // the caller built the URL before the probe found the registry answers plain HTTP
    if (learnedPlain.has(registry) && req.url.startsWith('https://')) req = {...req, url: `http://${req.url.slice('https://'.length)}`}
    // the credentials below are the registry's: whatever URL a caller was handed (a Link, a
    // Location), they go to its origin only; storage it redirects to is asked through raw()
    if (!sameOrigin(req.url, base(registry))) throw foreignOriginError(registry, req.url, `a ${req.method} request`)
    let scopes = req.scopes
    for (let round = 0; ; round++) {
      const authz = await auth.authorization(registry, scopes)
      const headers: Record<string, string> = {...req.headers}
      if (authz) headers.authorization = authz
      const res = await raw(req.url, req.method, headers, req.body, {where: registry, retry: req.retry ?? false})
      if (res.statusCode !== 401) return res
      await dump(res)
      const again = round === 0 ? await auth.refused(registry, scopes, res.headers['www-authenticate'], authz) : {retry: false, scopes}
      if (!again.retry || !replayable(req.body)) throw await unauthorized(registry, authz, scopes)
      scopes = again.scopes
    }
  }

  async function ping(registry: string): Promise<void> {
    await probe(registry)
    const scheme = auth.scheme(registry)
    if (scheme === 'basic') {
      const authz = await auth.authorization(registry, [])
      if (!authz) throw refusedError(registry, undefined)
      const res = await raw(`${base(registry)}/v2/`, 'GET', {authorization: authz}, undefined, {where: registry, retry: true})
      await dump(res)
      if (res.statusCode === 401) throw refusedError(registry, await credentials(registry))
      if (res.statusCode >= 300) throw registryError(res.statusCode, '', {registry, subject: `the API root of ${registry}`, action: 'pull'})
    } else if (scheme === 'bearer') {
      await auth.verifyToken(registry)
    }
  }

  // only where blob bodies go over the wire (once()); after the probe, which may learn the
  // registry answers plain HTTP (a failed probe is the next request's to report)
  const preconnect = (registry: string, count: number): void => void probe(registry).then(() => {
    const u = new URL(base(registry))
    if (route.direct(u.host)) wire.preconnect(u, count)
  }, () => {})

  const quickestAnswerMs = (url: string): number => {
    const u = new URL(url)
    return route.direct(u.host) ? wire.quickestAnswerMs(u) : Infinity
  }

  return {policy, base, repoUrl, send, raw, ping, preconnect, quickestAnswerMs, close: async () => {
    wire.close()
    await dispatcher?.close()
  }}
}
