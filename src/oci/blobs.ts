/**
 * Blobs: existence, streamed and verified downloads (following redirects to storage, which gets
 * no registry credentials; big blobs as parallel Range GETs, see ranged.ts), streamed monolithic
 * uploads restarted from a fresh source on failure, and cross-repository mounts.
 */
import {once} from 'node:events'
import type {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import type {Dispatcher} from 'undici'
import {KpiError} from '../errors.js'
import {pullScope, pushScope} from './auth.js'
import {verifiedFrom, verifyingStream} from './digest.js'
import {checkDigest, formatRepo} from './reference.js'
import type {ErrorContext} from './registry-errors.js'
import {NEAR_ANSWER_MS, RANGED_MIN_BYTES, WINDOW_BYTES, partSpool, rangedStream} from './ranged.js'
import {dump, fail, header, type Requester} from './request.js'
import {backoffMs, errorCodes, isConnectionReset, retryableStatus, retryAfterMs} from './retry.js'
import {mapTransportError} from './transport.js'
import type {RegistryClient, Repo} from './types.js'

const blobCtx = (repo: Repo, digest: string, action: 'pull' | 'push' = 'pull'): ErrorContext =>
  ({registry: repo.registry, subject: `blob ${formatRepo(repo)}@${digest}`, action})

export type BlobOps = Pick<RegistryClient, 'hasBlob' | 'getBlob' | 'putBlob' | 'mountBlob'>

export function blobOps(http: Requester): BlobOps {
  const sameOrigin = (url: string, repo: Repo): boolean => new URL(url).origin === new URL(http.base(repo.registry)).origin
  // parts of big blobs fetched ahead of the one being read, for every download of this client
  const spool = partSpool()

  /** `bytes from-to/size` as the registry must answer a Range GET, else a KpiError. */
  const checkRange = (res: Dispatcher.ResponseData, from: number, to: number, size: number, label: string): void => {
    const got = header(res, 'content-range')
    if (got !== `bytes ${from}-${to}/${size}`) {
      // destroyed unread, a body may say so with an error: nobody listens to it any more
      res.body.on('error', () => {}).destroy()
      throw new KpiError('integrity', `${label}: asked for bytes ${from}-${to} of ${size}, the registry answered ${got ? `"${got}"` : 'without a range'}`, {hint: 'the source serves different content than the manifest describes'})
    }
  }

  async function hasBlob(repo: Repo, digest: string): Promise<boolean> {
    checkDigest(digest, 'blob digest')
    const res = await http.send(repo.registry, {
      method: 'HEAD', url: http.repoUrl(repo, `blobs/${digest}`), scopes: [pullScope(repo.repository)], retry: true,
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

  /** GET `url` for a blob of `repo`: with the registry's credentials at the registry, with none elsewhere. */
  const getAt = (repo: Repo, url: string, range?: string): Promise<Dispatcher.ResponseData> => {
    const headers = range ? {range} : undefined
    if (sameOrigin(url, repo)) return http.send(repo.registry, {method: 'GET', url, scopes: [pullScope(repo.repository)], retry: true, ...(headers ? {headers} : {})})
    // storage (S3, a CDN) gets no registry credentials: they are for the registry only
    return http.raw(url, 'GET', headers ?? {}, undefined, {where: new URL(url).host, retry: true})
  }

  /** A long path to `url`'s origin, or one not yet measured: see ranged.ts's NEAR_ANSWER_MS. */
  const far = (url: string): boolean => http.quickestAnswerMs(url) >= NEAR_ANSWER_MS

  /**
   * GET a blob, following redirects; the response and the URL that gave it. `range` is asked of
   * each origin on a long path (far()): on a short one the whole blob comes in one GET.
   */
  async function openBlob(repo: Repo, digest: string, label: string, range?: string): Promise<{res: Dispatcher.ResponseData; url: string}> {
    let url = http.repoUrl(repo, `blobs/${digest}`)
    const rangeFor = (at: string): string | undefined => (range && far(at) ? range : undefined)
    let res = await getAt(repo, url, rangeFor(url))
    for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304; hops++) {
      const location = header(res, 'location')
      await dump(res)
      if (!location || hops >= 5) throw new KpiError('failed', `${label}: registry ${repo.registry} redirected ${location ? 'too many times' : 'without a location'}`)
      url = new URL(location, url).toString()
      res = await getAt(repo, url, rangeFor(url))
    }
    return {res, url}
  }

  async function getBlob(repo: Repo, digest: string, size?: number, opts: {verify?: boolean} = {}): Promise<Readable> {
    checkDigest(digest, 'blob digest')
    const label = `blob ${formatRepo(repo)}@${digest}`
    // a big blob is asked for in ranges over a long path (ranged.ts); a registry that ignores
    // Range answers 200 with all of it, which is read as usual
    const ranged = size !== undefined && size >= RANGED_MIN_BYTES
    const {res, url} = await openBlob(repo, digest, label, ranged ? `bytes=0-${WINDOW_BYTES - 1}` : undefined)
    let body: Readable = res.body
    if (ranged && res.statusCode === 206) {
      checkRange(res, 0, WINDOW_BYTES - 1, size, label)
      const partUrl = url
      body = rangedStream(size, res.body, async (from, to) => {
        const part = await getAt(repo, partUrl, `bytes=${from}-${to}`)
        if (part.statusCode !== 206) return fail(part, blobCtx(repo, digest))
        checkRange(part, from, to, size, label)
        return part.body
      }, spool)
    } else {
      if (res.statusCode !== 200) return fail(res, blobCtx(repo, digest))
      const declared = Number(header(res, 'content-length'))
      if (size !== undefined && Number.isFinite(declared) && declared !== size) {
        await dump(res)
        throw new KpiError('integrity', `${label}: the registry serves ${declared} bytes, expected ${size}`, {hint: 'the source serves different content than the manifest describes'})
      }
    }
    // without verify, the receiver checks the digest: the stream still counts the length
    // socket errors become a KpiError naming the registry; a consumer that stops early frees the socket
    return verifiedFrom(body, verifyingStream(digest, {size, label, digest: opts.verify !== false}), (e) => mapTransportError(e, repo.registry))
  }

  const mountQuery = (digest: string, from: string) => `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`
  const mountScopes = (repo: Repo, from: string) => (from === repo.repository ? [pushScope(repo.repository)] : [pushScope(repo.repository), pullScope(from)])

  function startUpload(repo: Repo, query = '', scopes = [pushScope(repo.repository)]): Promise<Dispatcher.ResponseData> {
    return http.send(repo.registry, {
      method: 'POST', url: http.repoUrl(repo, `blobs/uploads/${query}`), scopes,
      headers: {'content-length': '0'}, retry: true,
    })
  }

  /** Ends an upload session nobody will finish (a declined mount, a source that failed to open), so it does not linger. */
  async function cancelSession(repo: Repo, started: Dispatcher.ResponseData): Promise<void> {
    const location = header(started, 'location')
    if (!location) return
    const url = new URL(location, http.repoUrl(repo, 'blobs/uploads/')).toString()
    if (sameOrigin(url, repo)) await http.send(repo.registry, {method: 'DELETE', url, scopes: [pushScope(repo.repository)]}).then(dump, () => {})
  }

  /**
   * One attempt: POST (a mount from `mountFrom` when given), then the bytes in one streamed PUT.
   * Asking for a mount, the source is opened only once the registry has opened a session, so a
   * blob a mount placed is never read at all.
   */
  async function uploadOnce(repo: Repo, digest: string, size: number, open: () => Promise<Readable> | Readable, mountFrom?: string): Promise<Dispatcher.ResponseData | 'mounted'> {
    // Without a mount to ask for, the session is only a round trip before the bytes: the source
    // is opened meanwhile (the patch release's changed layer began 20-90 ms sooner under the
    // plan's load), and let go if no session opens.
    // The source can fail while the session is being opened (a small corrupt blob is read and
    // checked by then) or after undici has sent its last byte and stopped listening (a digest
    // mismatch found at the end): keep its error from the moment it opens, so it is neither
    // unhandled nor lost.
    let sourceError: unknown
    const openWatched = async () => {
      const s = await open()
      s.on('error', (e) => { sourceError ??= e })
      return s
    }
    const opening = mountFrom ? undefined : openWatched()
    opening?.catch(() => {})
    let stream: Readable | undefined
    let location: string | undefined
    try {
      const started = mountFrom ? await startUpload(repo, mountQuery(digest, mountFrom), mountScopes(repo, mountFrom)) : await startUpload(repo)
      if (mountFrom && started.statusCode === 201) {
        await dump(started)
        return 'mounted'
      }
      if (started.statusCode !== 202) return started
      await dump(started)
      location = header(started, 'location')
      if (!location) throw new KpiError('failed', `registry ${repo.registry} started an upload without a location`)
      try {
        stream = await (opening ?? openWatched())
        if (sourceError) throw sourceError
      } catch (e) {
        await cancelSession(repo, started)
        throw e
      }
    } finally {
      if (!stream) void opening?.then((s) => s.destroy(), () => {})
    }
    try {
      const target = new URL(location, http.repoUrl(repo, 'blobs/uploads/'))
      target.searchParams.set('digest', digest)
      const headers = {'content-type': 'application/octet-stream', 'content-length': String(size)}
      const res = sameOrigin(target.toString(), repo)
        ? await http.send(repo.registry, {method: 'PUT', url: target.toString(), scopes: [pushScope(repo.repository)], headers, body: stream})
        : await http.raw(target.toString(), 'PUT', headers, stream, {where: target.host})
      if (res.statusCode >= 400 && !sourceError && !stream.destroyed) {
        // the registry refused the bytes; the source may be about to say why, in its own words.
        // Meanwhile nothing reads the refusal: a connection reset now errors its body, which
        // without a listener would be an uncaught exception; the reader after sees it as `errored`
        res.body.on('error', () => {})
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

  async function putBlob(repo: Repo, digest: string, size: number, open: () => Promise<Readable> | Readable, opts: {mountFrom?: string} = {}): Promise<'uploaded' | 'mounted'> {
    checkDigest(digest, 'blob digest')
    // A monolithic streamed PUT with Content-Length: two round trips, no buffering. A failed
    // attempt restarts the whole upload with a fresh stream from `open` (and asks for the mount
    // again: an attempt that failed late may have placed the blob after all).
    let reauthed = false
    let stalled = 0
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= http.policy.retries
      let res: Dispatcher.ResponseData | 'mounted'
      try {
        res = await uploadOnce(repo, digest, size, open, opts.mountFrom)
      } catch (e) {
        const err = errorCodes(e).includes('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH')
          ? new KpiError('integrity', `blob ${formatRepo(repo)}@${digest}: the source stream did not give the ${size} bytes the blob has`, {hint: 'the source is truncated or its size is wrong; check the source', cause: e})
          : e instanceof KpiError ? e : mapTransportError(e, repo.registry)
        // a token that expired during a long upload: refreshed by send(), worth one restart
        if (err.kind === 'auth' && !reauthed) {
          reauthed = true
          continue
        }
        // a registry that went silent was already waited for, and its upload session start
        // retried, by the requests inside: restarting the whole upload again multiplies the wait
        if (err.kind === 'timeout' && stalled++ > 0) throw err
        if (last || !isConnectionReset(e)) throw err
        await sleep(backoffMs(attempt, http.policy))
        continue
      }
      if (res === 'mounted') return res
      if (res.statusCode === 201 || res.statusCode === 204) {
        await dump(res)
        return 'uploaded'
      }
      if (!last && retryableStatus(res.statusCode)) {
        // the PUT carries a stream, so withRetry does not retry it: its wait is this loop's, and a
        // registry limiting uploads says how long in Retry-After, as for every other request
        const after = res.statusCode === 429 || res.statusCode === 503 ? retryAfterMs(res.headers['retry-after'], http.policy.maxMs) : undefined
        await dump(res)
        await sleep(after ?? backoffMs(attempt, http.policy))
        continue
      }
      return fail(res, blobCtx(repo, digest, 'push'))
    }
  }

  async function mountBlob(repo: Repo, digest: string, fromRepository: string): Promise<boolean> {
    checkDigest(digest, 'blob digest')
    const res = await startUpload(repo, mountQuery(digest, fromRepository), mountScopes(repo, fromRepository))
    if (res.statusCode === 201) {
      await dump(res)
      return true
    }
    if (res.statusCode === 202) {
      // declined: the registry opened an ordinary upload instead
      await dump(res)
      await cancelSession(repo, res)
      return false
    }
    return fail(res, blobCtx(repo, digest, 'push'))
  }

  return {hasBlob, getBlob, putBlob, mountBlob}
}
