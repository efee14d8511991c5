/**
 * Manifests: fetched and kept as the exact bytes served (a digest is of bytes, not of JSON),
 * checked against the digest asked for or announced, bounded in size; pushed by digest or tag.
 */
import {KpiError} from '../errors.js'
import {pullScope, pushScope} from './auth.js'
import {algorithmOf, digestOf} from './digest.js'
import {formatImage, isDigest} from './reference.js'
import type {ErrorContext} from './registry-errors.js'
import {bareType, dump, fail, header, readLimited, type Requester} from './request.js'
import {MediaTypes, manifestAccept, type Descriptor, type FetchedManifest, type RegistryClient, type Repo} from './types.js'

/** Manifests bigger than this are refused rather than held in memory (containerd uses 4 MiB too). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

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

const manifestCtx = (repo: Repo, ref: string, action: 'pull' | 'push' = 'pull'): ErrorContext =>
  ({registry: repo.registry, subject: `manifest ${formatImage(repo, ref)}`, action})

export type ManifestOps = Pick<RegistryClient, 'getManifest' | 'headManifest' | 'putManifest'> & {
  /**
   * getManifest, but undefined where the registry answers 404: for a lookup that mostly finds
   * nothing (a referrers fallback tag per manifest), without an error made and caught each time
   */
  findManifest(repo: Repo, reference: string): Promise<FetchedManifest | undefined>
}

export function manifestOps(http: Requester): ManifestOps {
  const getManifest = async (repo: Repo, reference: string): Promise<FetchedManifest> => (await fetchManifest(repo, reference, false))!

  async function fetchManifest(repo: Repo, reference: string, missingIsUndefined: boolean): Promise<FetchedManifest | undefined> {
    const byDigest = isDigest(reference)
    const res = await http.send(repo.registry, {
      method: 'GET', url: http.repoUrl(repo, `manifests/${reference}`), scopes: [pullScope(repo.repository)],
      headers: {accept: manifestAccept}, retry: true,
    })
    if (res.statusCode === 404 && missingIsUndefined) {
      await dump(res)
      return undefined
    }
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
    const res = await http.send(repo.registry, {
      method: 'HEAD', url: http.repoUrl(repo, `manifests/${reference}`), scopes: [pullScope(repo.repository)],
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
    const res = await http.send(repo.registry, {
      method: 'PUT', url: http.repoUrl(repo, `manifests/${reference}`), scopes: [pushScope(repo.repository)],
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

  return {getManifest, findManifest: (repo, reference) => fetchManifest(repo, reference, true), headManifest, putManifest}
}
