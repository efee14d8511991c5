/**
 * Delta archives, both ends. Writing: the blobs an older version (a bundle or its relocated lock)
 * already has are left out. Importing: those blobs must already be at the destination, or be
 * mounted there from another of its repositories, before any manifest is pushed.
 */
import {mapBundleImages} from '../bundle/images.js'
import type {Bundle, LoadedBundle} from '../bundle/types.js'
import {KpiError, isKpiError} from '../errors.js'
import type {RegistryClient, Repo} from '../oci/index.js'
import type {OnEvent} from '../progress/events.js'
import type {ImageSource} from '../relocate/endpoints.js'
import {planImages, type Plan} from '../relocate/plan.js'
import {bundleRoots} from '../relocate/relocate.js'
import type {OpenedArchive} from './reader.js'
import type {Toc} from './toc.js'

/** The source references of a bundle or a relocated lock (a lock's `origins` say where each came from). */
export function sourceBundle(b: Bundle): Bundle {
  if (!b.origins) return b
  const origins = b.origins
  return mapBundleImages(b, (ref) => origins[ref] ?? ref)
}

/**
 * The blobs of `plan` an older version already has (read from `source`), and the toc's `since`.
 * A lock of the base names the customer's registry: its origins say where the images came from.
 */
export async function deltaExclusions(
  plan: Plan, since: LoadedBundle, source: ImageSource, opts: {referrers?: boolean; concurrency?: number; onEvent: OnEvent},
): Promise<{exclude: Set<string>; since: NonNullable<Toc['since']>}> {
  const base = sourceBundle(since.bundle)
  const named = {name: base.metadata.name, version: base.metadata.version}
  opts.onEvent({type: 'phase', phase: 'plan', message: `reading the base version ${named.name} ${named.version}`})
  let basePlan: Plan
  try {
    basePlan = await planImages(source, bundleRoots(base, (src) => src), {referrers: opts.referrers, concurrency: opts.concurrency})
  } catch (e) {
    throw new KpiError(isKpiError(e) ? e.kind : 'failed', `reading the base version ${named.name} ${named.version} for the delta: ${isKpiError(e) ? e.message : String(e)}`, {
      hint: 'the base version\'s images must still be in the source registry; or make a full archive without --since',
      cause: e,
    })
  }
  return {exclude: new Set([...basePlan.blobs.keys()].filter((d) => plan.blobs.has(d))), since: named}
}

/**
 * A delta archive lacks the blobs of its base version: each must already be in the destination
 * repository that needs it, or be mounted there from another repository of the destination.
 * Anything still missing stops the import here, before any manifest is pushed.
 */
export async function ensureBase(plan: Plan, archive: OpenedArchive, client: RegistryClient, toRepo: string, onEvent: OnEvent): Promise<void> {
  const needed = new Map<string, Map<string, Repo>>() // digest -> repos needing it
  for (const m of plan.manifests) {
    for (const b of m.blobs) {
      if (archive.hasBlob(b.digest)) continue
      const repos = needed.get(b.digest) ?? new Map<string, Repo>()
      repos.set(`${m.dst.registry}/${m.dst.repository}`, m.dst)
      needed.set(b.digest, repos)
    }
  }
  if (needed.size === 0) return
  const since = archive.toc.since ? `${archive.toc.since.name} ${archive.toc.since.version}` : 'its base version'
  onEvent({type: 'phase', phase: 'check', message: `checking that ${toRepo} holds the ${needed.size} blobs of ${since} the archive leaves out`})
  const allRepos = new Map<string, Repo>()
  for (const m of plan.manifests) allRepos.set(`${m.dst.registry}/${m.dst.repository}`, m.dst)
  const missing: string[] = []
  const users = new Map<string, string[]>()
  for (const img of archive.toc.images) for (const b of img.blobs) users.set(b.digest, [...(users.get(b.digest) ?? []), img.path])
  for (const [digest, repos] of needed) {
    const size = plan.blobs.get(digest)?.size ?? 0
    const lacking: Repo[] = []
    let home: Repo | undefined
    for (const r of repos.values()) {
      if (await client.hasBlob(r, digest)) home ??= r
      else lacking.push(r)
    }
    if (lacking.length === 0) continue
    if (!home) {
      for (const [k, r] of allRepos) if (!repos.has(k) && (await client.hasBlob(r, digest))) {
        home = r
        break
      }
    }
    if (home) {
      for (const r of lacking) {
        if (!(await client.mountBlob(r, digest, home.repository))) {
          const from = home
          await client.putBlob(r, digest, size, () => client.getBlob(from, digest, size))
        }
        onEvent({type: 'blob', digest, size, action: 'mounted'})
      }
      continue
    }
    missing.push(digest)
  }
  if (missing.length === 0) return
  const shown = missing.slice(0, 5).map((d) => `${d} (${(users.get(d) ?? ['?']).join(', ')})`).join('; ')
  throw new KpiError('not-found', `delta archive ${archive.file} lacks ${missing.length} blob${missing.length === 1 ? '' : 's'} of ${since} that ${toRepo} does not have: ${shown}${missing.length > 5 ? `; and ${missing.length - 5} more` : ''}`, {
    hint: `relocate ${since} to ${toRepo} first, or make a full archive without --since; nothing was pushed`,
    details: {missing},
  })
}
