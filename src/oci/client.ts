/**
 * The registry client (distribution API v2 / OCI distribution 1.1) on undici: manifests kept as
 * the exact bytes served, blobs streamed and verified, uploads streamed, cross-repository
 * mounts, referrers (API or fallback tag), tags. One probe of `/v2/` per registry learns how it
 * authenticates; after that requests carry a cached token and cost one round trip each.
 */
import {once} from 'node:events'
import type {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import type {Dispatcher} from 'undici'
import {KpiError} from '../errors.js'
import {Authenticator, pullScope, pushScope, refusedError, userOf} from './auth.js'
import {algorithmOf, digestHex, digestOf, verifyingStream} from './digest.js'
import {credentialResolver} from './dockerconfig.js'
import {checkDigest, formatImage, formatRepo, isDigest} from './reference.js'
import {parseErrorBody, readErrorBody, registryError, type ErrorContext} from './registry-errors.js'
import {backoffMs, defaultRetryPolicy, errorCodes, isConnectionReset, retryableStatus, withRetry, type RetryPolicy} from './retry.js'
import {createDispatcher, mapTransportError, registryBaseUrl, type ProxyOptions} from './transport.js'
import {
  MediaTypes, manifestAccept,
  type ClientOptions, type Credentials, type Descriptor, type FetchedManifest, type RegistryClient, type Repo,
} from './types.js'

/** Manifests bigger than this are refused rather than held in memory (containerd uses 4 MiB too). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

export interface OciClientOptions extends ClientOptions {
  /** proxy settings instead of HTTP_PROXY/HTTPS_PROXY/NO_PROXY */
  proxy?: ProxyOptions
  /** backoff tuning (tests shorten it) */
  retryPolicy?: Partial<RetryPolicy>
  /** tags asked for per page of the tag list (default 1000) */
  tagPageSize?: number
}

/** RegistryClient plus what this implementation can also tell. */
export interface OciClient extends RegistryClient {
  /** Whether the registry serves the OCI referrers API (probed once per registry). */
  referrersApi(repo: Repo): Promise<boolean>
}

type Body = Buffer | string | Readable | undefined

interface Req {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE'
  url: string
  scopes: string[]
  headers?: Record<string, string>
  body?: Body
  /** retry on 429/5xx/resets; only for idempotent requests with a replayable body */
  retry?: boolean
}

const replayable = (b: Body): boolean => b === undefined || typeof b === 'string' || Buffer.isBuffer(b)

const dump = async (res: Dispatcher.ResponseData): Promise<void> => {
  try {
    await res.body.dump()
  } catch {
    // the response is discarded anyway
  }
}

const header = (res: Dispatcher.ResponseData, name: string): string | undefined => {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** `type/subtype; charset=...` -> `type/subtype` */
const bareType = (ct: string | undefined): string | undefined => ct?.split(';')[0]?.trim() || undefined

/** The `rel="next"` target of a Link header, resolved against the request URL. */
export function nextLink(link: string | undefined, base: string): string | undefined {
  if (!link) return undefined
  for (const part of link.split(',')) {
    const m = /<([^>]+)>\s*;.*rel="?next"?/.exec(part)
    if (m) return new URL(m[1]!, base).toString()
  }
  return undefined
}

/** What a manifest is when the registry's Content-Type does not say. */
function inferMediaType(bytes: Buffer, contentType: string | undefined): string {
  const ct = bareType(contentType)
  if (ct && ct !== 'application/json' && ct !== 'application/octet-stream' && ct !== 'text/plain') return ct
  try {
    const m = JSON.parse(bytes.toString('utf8')) as {mediaType?: unknown; manifests?: unknown; config?: unknown}
    if (typeof m.mediaType === 'string' && m.mediaType) return m.mediaType
    if (Array.isArray(m.manifests)) return MediaTypes.ociIndex
    return MediaTypes.ociManifest
  } catch {
    return ct ?? MediaTypes.ociManifest
  }
}

export function createRegistryClient(opts: OciClientOptions = {}): OciClient {
  const userAgent = opts.userAgent ?? 'kpi'
  const dispatcher = createDispatcher({
    caCerts: opts.caCerts, insecureSkipTlsVerify: opts.insecureSkipTlsVerify,
    connections: opts.connections, proxy: opts.proxy,
  })
  const credentials = memoCredentials(opts.credentials ?? credentialResolver())
  const auth = new Authenticator({dispatcher, credentials, userAgent})
  const policy: RetryPolicy = {...defaultRetryPolicy, ...opts.retryPolicy, ...(opts.retries !== undefined ? {retries: opts.retries} : {})}
  const plainHttp = opts.plainHttp ?? (() => false)
  const probes = new Map<string, Promise<void>>()
  const referrersSupport = new Map<string, Promise<boolean>>()

  const base = (registry: string): string => registryBaseUrl(registry, plainHttp(registry))
  const repoUrl = (repo: Repo, rest: string): string => `${base(repo.registry)}/v2/${repo.repository}/${rest}`

  async function raw(url: string, method: Req['method'], headers: Record<string, string>, body: Body, where: string): Promise<Dispatcher.ResponseData> {
    const u = new URL(url)
    try {
      return await dispatcher.request({
        origin: u.origin, path: u.pathname + u.search, method, headers: {'user-agent': userAgent, ...headers},
        body: body as Dispatcher.DispatchOptions['body'],
        // undici closes the connection after every HEAD unless told otherwise; relocation is
        // mostly HEADs, and a new TLS connection per HEAD made it several times slower
        reset: false,
      })
    } catch (e) {
      throw mapTransportError(e, where)
    }
  }

  async function rawRetry(url: string, method: Req['method'], headers: Record<string, string>, body: Body, where: string, retry: boolean): Promise<Dispatcher.ResponseData> {
    if (!retry || !replayable(body)) return raw(url, method, headers, body, where)
    try {
      return await withRetry(() => raw(url, method, headers, body, where), policy, dump)
    } catch (e) {
      throw mapTransportError(e, where)
    }
  }

  /** GET /v2/ once per registry to learn whether and how it wants authentication. */
  function probe(registry: string): Promise<void> {
    let p = probes.get(registry)
    if (!p) {
      p = (async () => {
        const res = await rawRetry(`${base(registry)}/v2/`, 'GET', {}, undefined, registry, true)
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
      })()
      probes.set(registry, p)
      p.catch(() => probes.delete(registry))
    }
    return p
  }

  async function unauthorized(registry: string, sent: string | undefined, scopes: string[]): Promise<KpiError> {
    const creds = await credentials(registry)
    if (!sent || !creds || sent.startsWith('Basic ')) return refusedError(registry, sent ? creds : undefined)
    const what = scopes.map((s) => s.replace(/^repository:/, '')).join(', ')
    return new KpiError('auth', `registry ${registry} did not grant ${userOf(creds)} access to ${what}`, {
      hint: 'check that the user may pull (and push) these repositories',
    })
  }

  /** One authenticated request to a registry: retried when idempotent, re-authenticated once on 401. */
  async function send(registry: string, req: Req): Promise<Dispatcher.ResponseData> {
    await probe(registry)
    let scopes = req.scopes
    for (let round = 0; ; round++) {
      const authz = await auth.authorization(registry, scopes)
      const headers: Record<string, string> = {...req.headers}
      if (authz) headers.authorization = authz
      const res = await rawRetry(req.url, req.method, headers, req.body, registry, req.retry ?? false)
      if (res.statusCode !== 401) return res
      await dump(res)
      const again = round === 0 ? await auth.refused(registry, scopes, res.headers['www-authenticate'], authz) : {retry: false, scopes}
      if (!again.retry || !replayable(req.body)) throw await unauthorized(registry, authz, scopes)
      scopes = again.scopes
    }
  }

  async function fail(res: Dispatcher.ResponseData, ctx: ErrorContext): Promise<never> {
    throw registryError(res.statusCode, await readErrorBody(res), ctx)
  }

  async function readLimited(res: Dispatcher.ResponseData, limit: number, what: string): Promise<Buffer> {
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

  const manifestCtx = (repo: Repo, ref: string, action: 'pull' | 'push' = 'pull'): ErrorContext =>
    ({registry: repo.registry, subject: `manifest ${formatImage(repo, ref)}`, action})
  const blobCtx = (repo: Repo, digest: string, action: 'pull' | 'push' = 'pull'): ErrorContext =>
    ({registry: repo.registry, subject: `blob ${formatRepo(repo)}@${digest}`, action})

  async function getManifest(repo: Repo, reference: string): Promise<FetchedManifest> {
    const byDigest = isDigest(reference)
    const res = await send(repo.registry, {
      method: 'GET', url: repoUrl(repo, `manifests/${reference}`), scopes: [pullScope(repo.repository)],
      headers: {accept: manifestAccept}, retry: true,
    })
    if (res.statusCode !== 200) return fail(res, manifestCtx(repo, reference))
    const image = formatImage(repo, reference)
    const bytes = await readLimited(res, MAX_MANIFEST_BYTES, `manifest ${image}`)
    const mediaType = inferMediaType(bytes, header(res, 'content-type'))
    const served = header(res, 'docker-content-digest')
    // the digest of the bytes is what counts; the header (by tag) only has to agree with it
    const algorithm = byDigest ? algorithmOf(reference) : served && isDigest(served) ? algorithmOf(served) : 'sha256'
    const digest = digestOf(bytes, algorithm)
    if (byDigest && digest !== reference) {
      throw new KpiError('integrity', `manifest ${image}: the registry served content that hashes to ${digest}`, {hint: 'the source registry serves corrupt content for this digest'})
    }
    if (!byDigest && served && isDigest(served) && served !== digest) {
      throw new KpiError('integrity', `manifest ${image}: the registry says ${served} but the content hashes to ${digest}`)
    }
    return {bytes, mediaType, digest}
  }

  async function headManifest(repo: Repo, reference: string): Promise<Descriptor | undefined> {
    const res = await send(repo.registry, {
      method: 'HEAD', url: repoUrl(repo, `manifests/${reference}`), scopes: [pullScope(repo.repository)],
      headers: {accept: manifestAccept}, retry: true,
    })
    if (res.statusCode === 404) {
      await dump(res)
      return undefined
    }
    if (res.statusCode !== 200) return fail(res, manifestCtx(repo, reference))
    await dump(res)
    const digest = header(res, 'docker-content-digest')
    const size = Number(header(res, 'content-length'))
    const mediaType = bareType(header(res, 'content-type'))
    if (!digest || !isDigest(digest) || !Number.isFinite(size) || !mediaType || mediaType === 'application/json') {
      // some registries leave these out of HEAD: ask for the manifest itself
      const m = await getManifest(repo, reference)
      return {mediaType: m.mediaType, digest: m.digest, size: m.bytes.length}
    }
    if (isDigest(reference) && digest !== reference) {
      throw new KpiError('integrity', `manifest ${formatImage(repo, reference)}: the registry reports digest ${digest}`)
    }
    return {mediaType, digest, size}
  }

  async function putManifest(repo: Repo, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
    const byDigest = isDigest(reference)
    const computed = digestOf(bytes, byDigest ? algorithmOf(reference) : 'sha256')
    if (byDigest && computed !== reference) {
      throw new KpiError('integrity', `manifest for ${formatImage(repo, reference)} hashes to ${computed}, not to the digest it is pushed under`)
    }
    const res = await send(repo.registry, {
      method: 'PUT', url: repoUrl(repo, `manifests/${reference}`), scopes: [pushScope(repo.repository)],
      headers: {'content-type': mediaType}, body: bytes, retry: true,
    })
    if (res.statusCode !== 201 && res.statusCode !== 200 && res.statusCode !== 202) return fail(res, manifestCtx(repo, reference, 'push'))
    await dump(res)
    const reported = header(res, 'docker-content-digest')
    if (reported && isDigest(reported) && algorithmOf(reported) === algorithmOf(computed) && reported !== computed) {
      throw new KpiError('integrity', `registry ${repo.registry} stored manifest ${formatImage(repo, reference)} as ${reported}, not as ${computed}`, {hint: 'the registry rewrote the manifest; relocated digests would not match'})
    }
    return reported && isDigest(reported) ? reported : computed
  }

  async function hasBlob(repo: Repo, digest: string): Promise<boolean> {
    checkDigest(digest, 'blob digest')
    const res = await send(repo.registry, {
      method: 'HEAD', url: repoUrl(repo, `blobs/${digest}`), scopes: [pullScope(repo.repository)], retry: true,
    })
    if (res.statusCode === 404) {
      await dump(res)
      return false
    }
    // a redirect to storage also means the registry has it
    if (res.statusCode === 200 || (res.statusCode >= 300 && res.statusCode < 400)) {
      await dump(res)
      return true
    }
    return fail(res, blobCtx(repo, digest))
  }

  async function getBlob(repo: Repo, digest: string, size?: number): Promise<Readable> {
    checkDigest(digest, 'blob digest')
    const label = `blob ${formatRepo(repo)}@${digest}`
    const registryOrigin = new URL(base(repo.registry)).origin
    let res = await send(repo.registry, {
      method: 'GET', url: repoUrl(repo, `blobs/${digest}`), scopes: [pullScope(repo.repository)], retry: true,
    })
    let url = repoUrl(repo, `blobs/${digest}`)
    for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304; hops++) {
      const location = header(res, 'location')
      await dump(res)
      if (!location || hops >= 5) throw new KpiError('failed', `${label}: registry ${repo.registry} redirected ${location ? 'too many times' : 'without a location'}`)
      url = new URL(location, url).toString()
      const target = new URL(url)
      if (target.origin === registryOrigin) {
        res = await send(repo.registry, {method: 'GET', url, scopes: [pullScope(repo.repository)], retry: true})
      } else {
        // storage (S3, a CDN) gets no registry credentials: they are for the registry only
        res = await rawRetry(url, 'GET', {}, undefined, target.host, true)
      }
    }
    if (res.statusCode !== 200) return fail(res, blobCtx(repo, digest))
    const declared = Number(header(res, 'content-length'))
    if (size !== undefined && Number.isFinite(declared) && declared !== size) {
      await dump(res)
      throw new KpiError('integrity', `${label}: the registry serves ${declared} bytes, expected ${size}`, {hint: 'the source serves different content than the manifest describes'})
    }
    const body = res.body
    const verifier = verifyingStream(digest, {size, label})
    // socket errors become a KpiError naming the registry; a consumer that stops early frees the socket
    body.once('error', (e) => verifier.destroy(mapTransportError(e, repo.registry)))
    verifier.once('close', () => {
      if (!body.destroyed) body.destroy()
    })
    body.pipe(verifier)
    return verifier
  }

  async function startUpload(repo: Repo, query = '', scopes = [pushScope(repo.repository)]): Promise<Dispatcher.ResponseData> {
    return send(repo.registry, {
      method: 'POST', url: repoUrl(repo, `blobs/uploads/${query}`), scopes,
      headers: {'content-length': '0'}, retry: true,
    })
  }

  async function uploadOnce(repo: Repo, digest: string, size: number, open: () => Promise<Readable> | Readable): Promise<Dispatcher.ResponseData> {
    // open the source first: if it fails, no upload session is left behind in the registry
    const stream = await open()
    // The source can fail after undici has sent its last byte and stopped listening (a digest
    // mismatch found at the end): keep its error, so it is neither unhandled nor lost.
    let sourceError: unknown
    stream.on('error', (e) => { sourceError ??= e })
    try {
      const res = await putSession(repo, digest, size, stream)
      if (res.statusCode >= 400 && !sourceError && !stream.destroyed) {
        // the registry refused the bytes; the source may be about to say why, in its own words
        await Promise.race([once(stream, 'close').catch(() => {}), sleep(100)])
      }
      if (sourceError) {
        await dump(res)
        throw sourceError
      }
      return res
    } catch (e) {
      throw sourceError ?? e
    } finally {
      // a refused or failed upload may not have read the source to its end: release it
      if (!stream.readableEnded) stream.destroy()
    }
  }

  async function putSession(repo: Repo, digest: string, size: number, stream: Readable): Promise<Dispatcher.ResponseData> {
    const started = await startUpload(repo)
    if (started.statusCode !== 202) return started
    await dump(started)
    const location = header(started, 'location')
    if (!location) throw new KpiError('failed', `registry ${repo.registry} started an upload without a location`)
    const target = new URL(location, repoUrl(repo, 'blobs/uploads/'))
    target.searchParams.set('digest', digest)
    const headers = {'content-type': 'application/octet-stream', 'content-length': String(size)}
    if (target.origin === new URL(base(repo.registry)).origin) {
      return send(repo.registry, {method: 'PUT', url: target.toString(), scopes: [pushScope(repo.repository)], headers, body: stream})
    }
    return raw(target.toString(), 'PUT', headers, stream, target.host)
  }

  async function putBlob(repo: Repo, digest: string, size: number, open: () => Promise<Readable> | Readable): Promise<void> {
    checkDigest(digest, 'blob digest')
    // A monolithic streamed PUT with Content-Length: two round trips, no buffering. A failed
    // attempt restarts the whole upload with a fresh stream from `open`.
    let reauthed = false
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= policy.retries
      let res: Dispatcher.ResponseData
      try {
        res = await uploadOnce(repo, digest, size, open)
      } catch (e) {
        const err = errorCodes(e).includes('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH')
          ? new KpiError('integrity', `blob ${formatRepo(repo)}@${digest}: the source stream did not give the ${size} bytes the blob has`, {hint: 'the source is truncated or its size is wrong; check the source', cause: e})
          : e instanceof KpiError ? e : mapTransportError(e, repo.registry)
        // a token that expired during a long upload: refreshed by send(), worth one restart
        if (err.kind === 'auth' && !reauthed) {
          reauthed = true
          continue
        }
        if (last || !isConnectionReset(e)) throw err
        await sleep(backoffMs(attempt, policy))
        continue
      }
      if (res.statusCode === 201 || res.statusCode === 204) {
        await dump(res)
        return
      }
      if (!last && retryableStatus(res.statusCode)) {
        await dump(res)
        await sleep(backoffMs(attempt, policy))
        continue
      }
      return fail(res, blobCtx(repo, digest, 'push'))
    }
  }

  async function mountBlob(repo: Repo, digest: string, fromRepository: string): Promise<boolean> {
    checkDigest(digest, 'blob digest')
    const query = `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(fromRepository)}`
    const res = await startUpload(repo, query, [pushScope(repo.repository), pullScope(fromRepository)])
    if (res.statusCode === 201) {
      await dump(res)
      return true
    }
    if (res.statusCode === 202) {
      // declined: the registry opened an ordinary upload instead; close it so it does not linger
      await dump(res)
      const location = header(res, 'location')
      if (location) {
        const url = new URL(location, repoUrl(repo, 'blobs/uploads/')).toString()
        if (new URL(url).origin === new URL(base(repo.registry)).origin) {
          await send(repo.registry, {method: 'DELETE', url, scopes: [pushScope(repo.repository)]}).then(dump, () => {})
        }
      }
      return false
    }
    return fail(res, blobCtx(repo, digest, 'push'))
  }

  async function listTags(repo: Repo): Promise<string[]> {
    const tags: string[] = []
    let url: string | undefined = repoUrl(repo, `tags/list?n=${opts.tagPageSize ?? 1000}`)
    for (let pages = 0; url && pages < 10_000; pages++) {
      const res: Dispatcher.ResponseData = await send(repo.registry, {method: 'GET', url, scopes: [pullScope(repo.repository)], retry: true})
      if (res.statusCode === 404) {
        await dump(res)
        return tags
      }
      if (res.statusCode !== 200) return fail(res, {registry: repo.registry, subject: `tags of ${formatRepo(repo)}`, action: 'pull'})
      const body = await readLimited(res, 64 * 1024 * 1024, `tags of ${formatRepo(repo)}`)
      const parsed = JSON.parse(body.toString('utf8')) as {tags?: string[] | null}
      tags.push(...(parsed.tags ?? []))
      url = nextLink(header(res, 'link'), url)
    }
    return tags
  }

  /** The referrers listed by the API; undefined: no API; null: the repository is unknown, and so is the API. */
  async function referrersFromApi(repo: Repo, digest: string): Promise<Descriptor[] | undefined | null> {
    const out: Descriptor[] = []
    let url: string | undefined = repoUrl(repo, `referrers/${digest}`)
    for (let pages = 0; url && pages < 1000; pages++) {
      const res: Dispatcher.ResponseData = await send(repo.registry, {
        method: 'GET', url, scopes: [pullScope(repo.repository)], headers: {accept: MediaTypes.ociIndex}, retry: true,
      })
      // registries with the API answer 200 (an empty index for an unknown subject); others 404/400/405
      if (pages === 0 && (res.statusCode === 404 || res.statusCode === 400 || res.statusCode === 405)) {
        // NAME_UNKNOWN: the registry routed the request and has no such repository (go-containerregistry's
        // registry does this), which says nothing about the API, so it must not be remembered for the
        // registry (oras-go reads it the same way)
        if (res.statusCode === 404 && parseErrorBody(await readErrorBody(res)).some((e) => e.code === 'NAME_UNKNOWN')) return null
        await dump(res)
        return undefined
      }
      if (res.statusCode !== 200) return fail(res, {registry: repo.registry, subject: `referrers of ${formatRepo(repo)}@${digest}`, action: 'pull'})
      const body = await readLimited(res, MAX_MANIFEST_BYTES, `referrers of ${formatRepo(repo)}@${digest}`)
      out.push(...parseIndexManifests(body))
      url = nextLink(header(res, 'link'), url)
    }
    return out
  }

  function referrersApi(repo: Repo): Promise<boolean> {
    let p = referrersSupport.get(repo.registry)
    if (!p) {
      // the empty descriptor's digest: a subject that surely has no referrers
      p = referrersFromApi(repo, digestOf('{}')).then((r) => {
        // unknown repository: answer as without the API (the fallback tag is safe either way), ask again next time
        if (r === null) referrersSupport.delete(repo.registry)
        return !!r
      })
      referrersSupport.set(repo.registry, p)
      p.catch(() => referrersSupport.delete(repo.registry))
    }
    return p
  }

  async function referrers(repo: Repo, digest: string): Promise<Descriptor[]> {
    checkDigest(digest, 'subject digest')
    const known = referrersSupport.get(repo.registry)
    if (!known || (await known)) {
      const viaApi = await referrersFromApi(repo, digest)
      if (!known && viaApi !== null) referrersSupport.set(repo.registry, Promise.resolve(viaApi !== undefined))
      if (viaApi) return viaApi
    }
    try {
      const m = await getManifest(repo, referrersTag(digest))
      return parseIndexManifests(m.bytes)
    } catch (e) {
      if (e instanceof KpiError && e.kind === 'not-found') return []
      throw e
    }
  }

  async function ping(registry: string): Promise<void> {
    await probe(registry)
    const scheme = auth.scheme(registry)
    if (scheme === 'basic') {
      const authz = await auth.authorization(registry, [])
      if (!authz) throw refusedError(registry, undefined)
      const res = await rawRetry(`${base(registry)}/v2/`, 'GET', {authorization: authz}, undefined, registry, true)
      await dump(res)
      if (res.statusCode === 401) throw refusedError(registry, await credentials(registry))
      if (res.statusCode >= 300) throw registryError(res.statusCode, '', {registry, subject: `the API root of ${registry}`, action: 'pull'})
    } else if (scheme === 'bearer') {
      await auth.verifyToken(registry)
    }
  }

  return {
    ping, getManifest, headManifest, putManifest, hasBlob, getBlob, putBlob, mountBlob, referrers, listTags, referrersApi,
    close: () => dispatcher.close(),
  }
}

/** The OCI 1.1 fallback tag for referrers of `digest`: `sha256-<hex>`. */
export const referrersTag = (digest: string): string => `${digest.slice(0, digest.indexOf(':'))}-${digestHex(digest)}`.slice(0, 128)

export function parseIndexManifests(bytes: Buffer): Descriptor[] {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as {manifests?: Descriptor[]}
    return Array.isArray(m.manifests) ? m.manifests : []
  } catch {
    return []
  }
}

/** Memoise a credentials lookup so helpers run once per registry, failures retried. */
function memoCredentials(f: (registry: string) => Promise<Credentials | undefined>): (registry: string) => Promise<Credentials | undefined> {
  const cache = new Map<string, Promise<Credentials | undefined>>()
  return (registry) => {
    let p = cache.get(registry)
    if (!p) {
      p = f(registry)
      cache.set(registry, p)
      p.catch(() => cache.delete(registry))
    }
    return p
  }
}
