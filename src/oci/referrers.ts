/**
 * Referrers (manifests with a `subject`: signatures, SBOMs), both sides. Reading: the OCI
 * referrers API where the registry serves it (probed once per registry), else the
 * `sha256-<hex>` fallback tag index of OCI distribution 1.1. Writing: registries with the API
 * index a pushed referrer themselves; for the others (distribution 2.8) the client maintains the
 * fallback tag index, as the spec asks of clients.
 */
import type {Dispatcher} from 'undici'
import {KpiError} from '../errors.js'
import {pullScope} from './auth.js'
import {digestHex, digestOf} from './digest.js'
import {MAX_MANIFEST_BYTES, type ManifestOps} from './manifests.js'
import {checkDigest, formatRepo} from './reference.js'
import {parseErrorBody, readErrorBody} from './registry-errors.js'
import {dump, fail, readLimited, type Requester} from './request.js'
import {nextPage} from './tags.js'
import {MediaTypes, type Descriptor, type ImageIndex, type RegistryClient, type Repo} from './types.js'

/** What this client can tell beyond RegistryClient: whether a registry serves the referrers API. */
export interface ReferrersApiProbe {
  referrersApi(repo: Repo): Promise<boolean>
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

// ---- reading ----

export function referrerOps(http: Requester, manifests: Pick<ManifestOps, 'findManifest'>): ReferrersApiProbe & Pick<RegistryClient, 'referrers'> {
  const referrersSupport = new Map<string, Promise<boolean | null>>()

  /** The referrers listed by the API; undefined: no API; null: the repository is unknown, and so is the API. */
  async function referrersFromApi(repo: Repo, digest: string): Promise<Descriptor[] | undefined | null> {
    const out: Descriptor[] = []
    let url: string | undefined = http.repoUrl(repo, `referrers/${digest}`)
    for (let pages = 0; url && pages < 1000; pages++) {
      const res: Dispatcher.ResponseData = await http.send(repo.registry, {
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
      url = nextPage(http, repo.registry, res, url, `referrers of ${formatRepo(repo)}@${digest}`)
    }
    return out
  }

  /**
   * Remembers what `answer` says of the registry's API: true or false for the registry, null when
   * the repository was unknown (which says nothing of the API: forgotten, so the next caller asks).
   */
  function learn(repo: Repo, answer: Promise<Descriptor[] | undefined | null>): Promise<boolean | null> {
    const p = answer.then((r) => (r === null ? null : !!r))
    referrersSupport.set(repo.registry, p)
    const forget = () => {
      if (referrersSupport.get(repo.registry) === p) referrersSupport.delete(repo.registry)
    }
    p.then((v) => v === null && forget(), forget)
    return p
  }

  /** What is known of the registry's API: true, false, or null when nobody has found out yet (or a lookup failed). */
  async function known(repo: Repo): Promise<boolean | null> {
    const p = referrersSupport.get(repo.registry)
    return p ? p.catch(() => null) : null
  }

  async function referrersApi(repo: Repo): Promise<boolean> {
    const k = await known(repo)
    if (k !== null) return k
    // the empty descriptor's digest: a subject that surely has no referrers; an unknown repository
    // answers as without the API this time (the fallback tag is safe either way)
    return (await learn(repo, referrersFromApi(repo, digestOf('{}')))) === true
  }

  async function referrers(repo: Repo, digest: string): Promise<Descriptor[]> {
    checkDigest(digest, 'subject digest')
    // The first lookup on a registry also learns whether it serves the API; lookups that come
    // meanwhile (a plan asks for every manifest at once) wait for that answer instead of each asking
    // the API first. A waiter whose answer came from an unknown repository asks for itself: taking
    // that as "no API" would read the fallback tag where the API lists the referrers.
    const k = await known(repo)
    let viaApi: Descriptor[] | undefined | null
    if (k === true) viaApi = await referrersFromApi(repo, digest)
    else if (k === null) {
      const first = referrersFromApi(repo, digest)
      void learn(repo, first)
      viaApi = await first
    }
    if (viaApi) return viaApi
    const m = await manifests.findManifest(repo, referrersTag(digest))
    return m ? parseIndexManifests(m.bytes) : []
  }

  return {referrersApi, referrers}
}

// ---- writing ----

/** A client that can push referrers; one that can tell whether a registry has the API skips the fallback tag there. */
type ReferrerWriter = RegistryClient & Partial<ReferrersApiProbe>

/** The descriptor an index of referrers lists for a manifest (spec: artifactType, else config type). */
export function referrerDescriptor(bytes: Buffer, mediaType: string): Descriptor & {subject?: Descriptor} {
  let m: {artifactType?: string; config?: {mediaType?: string}; annotations?: Record<string, string>; subject?: Descriptor}
  try {
    m = JSON.parse(bytes.toString('utf8')) as typeof m
  } catch {
    throw new KpiError('input', 'referrer manifest is not valid JSON')
  }
  const d: Descriptor & {subject?: Descriptor} = {mediaType, digest: digestOf(bytes), size: bytes.length}
  const artifactType = m.artifactType ?? m.config?.mediaType
  if (artifactType) d.artifactType = artifactType
  if (m.annotations && Object.keys(m.annotations).length) d.annotations = m.annotations
  if (m.subject) d.subject = m.subject
  return d
}

/**
 * Push `bytes` (a manifest with `subject`) by digest into `repo`, then add it to the fallback
 * tag index of its subject unless the registry serves the referrers API. Returns the digest.
 * The fallback update is read-modify-write: concurrent writers to one subject can lose entries.
 */
export async function attachReferrer(client: ReferrerWriter, repo: Repo, bytes: Buffer, mediaType: string): Promise<string> {
  const {subject, ...desc} = referrerDescriptor(bytes, mediaType)
  if (!subject?.digest) throw new KpiError('input', `referrer ${desc.digest} for ${formatRepo(repo)} has no subject`)
  const digest = await client.putManifest(repo, desc.digest, bytes, mediaType)
  await linkReferrer(client, repo, subject.digest, {...desc, digest})
  return digest
}

/**
 * Make `referrer` (already pushed) discoverable from `subject`: a no-op where the registry serves
 * the referrers API, else a merge into the subject's `sha256-<hex>` fallback tag index.
 */
export async function linkReferrer(client: ReferrerWriter, repo: Repo, subject: string, referrer: Descriptor): Promise<void> {
  if (client.referrersApi && (await client.referrersApi(repo))) return
  const tag = referrersTag(subject)
  let index: ImageIndex = {schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: []}
  try {
    const existing = await client.getManifest(repo, tag)
    const parsed = JSON.parse(existing.bytes.toString('utf8')) as ImageIndex
    if (Array.isArray(parsed.manifests)) index = {...parsed, manifests: parsed.manifests}
  } catch (e) {
    if (!(e instanceof KpiError && e.kind === 'not-found')) throw e
  }
  if (index.manifests.some((m) => m.digest === referrer.digest)) return
  index.manifests.push(referrer)
  await client.putManifest(repo, tag, Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex)
}
