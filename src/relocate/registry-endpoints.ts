/** A registry as a relocation source and sink, over the OCI client, and as the endpoints relocate() takes. */
import {registryDetails} from '../errors.js'
import {algorithmOf, type Descriptor, type FetchedManifest, formatRepo, linkReferrer, type RegistryClient, type Repo} from '../oci/index.js'
import {limit} from '../pool.js'
import type {Bundle, LoadedBundle} from '../bundle/types.js'
import type {ImageSink, ImageSource} from './endpoints.js'
import {parseDestination, type Destination} from './naming.js'
import {manifestKey, type PlanRoot} from './plan.js'
import type {OpenedSource, RelocationFrom, RelocationTo} from './relocate.js'

export function registrySource(client: RegistryClient): ImageSource {
  return {
    name: 'source registry',
    referrersMayBeStale: true,
    getManifest: (repo, reference) => client.getManifest(repo, reference),
    getBlob: (repo, digest, size, opts) => client.getBlob(repo, digest, size, opts),
    referrers: (repo, digest) => client.referrers(repo, digest),
  }
}

export function registrySink(client: RegistryClient, registry: string, concurrency = 8): ImageSink {
  let mounts: 'unknown' | 'asked' | 'check' | 'ignored' = 'unknown'
  // A fallback tag index is read, extended and written again: two referrers of one subject linked
  // at once (the executor links as each referrer lands) would each write the index they read, and
  // all but one would be lost. Updates of one subject's index run one after the other.
  const linking = new Map<string, Promise<void>>()
  const linkOneAtATime = (repo: Repo, subject: string, referrer: Descriptor): Promise<void> => {
    const k = `${formatRepo(repo)}@${subject}`
    const run = (linking.get(k) ?? Promise.resolve()).catch(() => {}).then(() => linkReferrer(client, repo, subject, referrer))
    linking.set(k, run)
    const forget = () => {
      if (linking.get(k) === run) linking.delete(k)
    }
    run.then(forget, forget)
    return run
  }
  return {
    name: `registry ${registry}`,
    registry,
    concurrency,
    manifestImpliesContent: true,
    verifiesDigests: true,
    hasBlob: (repo, digest) => client.hasBlob(repo, digest).catch(unknownIsMissing),
    hasManifest: (repo, digest) => client.headManifest(repo, digest).then((m) => m !== undefined, unknownIsMissing),
    // a tag the registry cannot answer for (500) is set again, as a missing one
    tagged: (repo, tag) => manifestAt(client, repo, tag),
    prepare: (count) => client.preconnect?.(registry, count),
    mountBlob: (repo, digest, from) => client.mountBlob(repo, digest, from),
    putBlob: (repo, digest, size, open, opts) => client.putBlob(repo, digest, size, open, opts),
    mountsCheck: () => mounts === 'check',
    probeMounts: async (repo, digest) => {
      if (mounts !== 'unknown') return
      mounts = 'asked'
      // a failed probe proves nothing: blobs keep their HEAD
      mounts = (await client.mountBlob(repo, digest, repo.repository).catch(() => false)) ? 'check' : 'ignored'
    },
    // the executor has asked hasManifest (just before, or when it checked the image's root):
    // called for a manifest that is missing, or to set tags. A missing manifest with a tag is pushed by the tag alone: the registry keeps it under
    // its digest too, and says which (client.putManifest checks that it is this one).
    putManifest: async (repo, m: FetchedManifest, tags, exists) => {
      const byTag = !exists && tags.length > 0 && algorithmOf(m.digest) === 'sha256'
      if (!exists && !byTag) await client.putManifest(repo, m.digest, m.bytes, m.mediaType)
      for (const t of tags) await client.putManifest(repo, t, m.bytes, m.mediaType)
    },
    linkReferrer: linkOneAtATime,
  }
}

/**
 * A HEAD the registry answers with a server error (after the client's retries) says nothing
 * about whether it holds the content: it is pushed. distribution rewrites a repository's link
 * file in place (truncate, then write) on each upload or mount; killed in between, it answers 500
 * ("invalid checksum digest format") for that blob or manifest in that repository until a push
 * writes the link again (seen in CI: a registry restarted mid-run). A registry that is down fails
 * the push in turn, with its own error.
 */
function unknownIsMissing(e: unknown): false {
  if ((registryDetails(e)?.status ?? 0) >= 500) return false
  throw e
}

/** What `reference` names at the registry; undefined when nothing, or when it cannot say (unknownIsMissing). */
const manifestAt = (client: RegistryClient, repo: Repo, reference: string): Promise<Descriptor | undefined> =>
  client.headManifest(repo, reference).catch((e: unknown) => void unknownIsMissing(e))

/**
 * A bundle's images read through `source` (registries by default); `bundle` may be a loaded
 * bundle (its files go into an archive) or a bundle in memory.
 */
export function fromSource(source: ImageSource, bundle: LoadedBundle | Bundle, more?: OpenedSource['moreRoots']): RelocationFrom {
  const loaded = 'bundle' in bundle ? bundle : undefined
  return {open: async () => ({bundle: loaded ? loaded.bundle : (bundle as Bundle), ...(loaded ? {loaded} : {}), source, ...(more ? {moreRoots: more} : {})})}
}

/** A bundle's images where its references say they are (and `more`, e.g. the bundle image). */
export const fromRegistry = (client: RegistryClient, bundle: LoadedBundle | Bundle, more?: OpenedSource['moreRoots']): RelocationFrom =>
  fromSource(registrySource(client), bundle, more)

/** Into a registry under REGISTRY/PREFIX (`toRepo`), `uploads` blobs at once; the lock points there. */
export function toRegistry(client: RegistryClient, to: string | Destination, uploads?: number): RelocationTo<undefined> {
  const destination = typeof to === 'string' ? parseDestination(to) : to
  const toRepo = typeof to === 'string' ? to : `${to.registry}${to.prefix ? `/${to.prefix}` : ''}`
  const sink = registrySink(client, destination.registry, uploads)
  // Whether each root is there, asked while the source is read: with nothing to move, those HEADs
  // came after the plan, one more round of requests at the end. Each answer is used once, for the
  // copy's first question about its root (asked before anything is pushed); later ones go out.
  // The same for what the roots' tags name, which a root found there is asked next.
  const early = new Map<string, Promise<boolean>>()
  const earlyTags = new Map<string, Promise<Descriptor | undefined>>()
  const firstAnswer = <T>(answers: Map<string, Promise<T>>, k: string, ask: () => Promise<T>): Promise<T> => {
    const answer = answers.get(k)
    if (!answer) return ask()
    answers.delete(k)
    return answer
  }
  const hasManifest: ImageSink['hasManifest'] = (repo, digest) => firstAnswer(early, manifestKey(repo, digest), () => sink.hasManifest(repo, digest))
  const tagged: NonNullable<ImageSink['tagged']> = (repo, tag) => firstAnswer(earlyTags, tagKey(repo, tag), () => sink.tagged!(repo, tag))
  const answering: ImageSink = {...sink, hasManifest, tagged}
  const askEarly = <T>(answers: Map<string, Promise<T>>, k: string, ask: () => Promise<T>): void => {
    if (answers.has(k)) return
    const answer = ask()
    // a failed answer is thrown where the copy asks, as it would have been without asking early
    answer.catch(() => undefined)
    answers.set(k, answer)
  }
  return {
    destination,
    lookAhead: (roots) => {
      early.clear()
      earlyTags.clear()
      const ask = limit(LOOK_AHEAD)
      const changedBy = new Map<string, Promise<boolean>>()
      const wholeBy = new Map<string, Promise<Descriptor | undefined>>()
      // roots of one image at one destination (a bundle may name it twice) are asked about once, with all their tags
      const images = new Map<string, {r: PlanRoot; tags: string[]}>()
      for (const r of roots) {
        const key = manifestKey(r.dst, r.digest)
        const image = images.get(key)
        if (!image) images.set(key, {r, tags: [...r.tags]})
        else for (const t of r.tags) if (!image.tags.includes(t)) image.tags.push(t)
      }
      for (const [key, {r, tags}] of images) {
        if (tags.length === 0) {
          const at = ask(() => manifestAt(client, r.dst, r.digest), 1)
          askEarly(early, key, () => at.then((d) => d !== undefined))
          wholeBy.set(key, at.catch(() => undefined))
          continue
        }
        for (const t of tags) askEarly(earlyTags, tagKey(r.dst, t), () => ask(() => sink.tagged!(r.dst, t)))
        // taken now: the copy uses up the tags' answers later
        const named = tags.map((t) => earlyTags.get(tagKey(r.dst, t))!)
        const names = (d: Descriptor | undefined) => d?.digest === r.digest
        // a tag that names the root already says it is there: with nothing to move, one HEAD per
        // root as before; the root itself is asked only when none of its tags does, and then
        // before the other roots' tags (an image that changed starts moving on that answer)
        askEarly(early, key, async () => (await Promise.all(named.map((p) => p.catch(() => undefined)))).some(names) || ask(() => sink.hasManifest(r.dst, r.digest), 1))
        // every tag answered, and none names the root: it changed, or it is new. Asking for it by
        // digest is a round trip more (27 ms of the patch release's path to its changed layer,
        // under the plan's load). A tag that could not be asked about says nothing; an untagged
        // root has only `missing`.
        changedBy.set(key, Promise.all(named).then((ds) => !ds.some(names), () => false))
        // every tag names it: nothing of it is left to copy
        wholeBy.set(key, Promise.all(named).then((ds) => (ds.every(names) ? ds[0] : undefined), () => undefined))
      }
      // a root not asked about (none) is not started early: the copy asks in its turn
      const missing = (r: PlanRoot) => early.get(manifestKey(r.dst, r.digest))?.then((there) => !there) ?? Promise.resolve(false)
      const changed = (r: PlanRoot) => changedBy.get(manifestKey(r.dst, r.digest))
      const atDestination = (r: PlanRoot) => wholeBy.get(manifestKey(r.dst, r.digest))
      return {sink: answering, missing, changed, atDestination}
    },
    open: async () => ({sink: answering, registry: {client, toRepo}}),
  }
}

/** root HEADs at once while the source is read (the copy's own requests are 16 at once) */
const LOOK_AHEAD = 8
const tagKey = (repo: Repo, tag: string) => `${formatRepo(repo)}:${tag}`
