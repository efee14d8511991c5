/**
 * The relocation plan: every manifest and blob that a set of root images needs, as one graph.
 * Manifests are kept as the exact bytes the source served, so digests never change; the plan
 * lists them children first, so an executor that follows it never pushes a manifest before
 * what it refers to.
 */
import {byCodeUnit} from '../canonical.js'
import {isKpiError, KpiError} from '../errors.js'
import {type Descriptor, type FetchedManifest, formatRepo, type ImageIndex, type ImageManifest, isIndexMediaType, type Repo} from '../oci/index.js'
import type {ImageSource} from './endpoints.js'
import {limit, once} from '../pool.js'

export interface PlanRoot {
  /** where the image sits in the bundle, e.g. `stacks[0].runImage` */
  path: string
  /** the reference as written in the bundle */
  ref: string
  src: Repo
  dst: Repo
  digest: string
  /** tags to set at the destination besides the digest */
  tags: string[]
}

export interface PlanManifest {
  src: Repo
  dst: Repo
  manifest: FetchedManifest
  /** config and layers of an image manifest; empty for an index */
  blobs: Descriptor[]
  /** digests of the manifests an index lists (same repository) */
  children: string[]
  /** the manifest this one is attached to, for referrers */
  subject?: Descriptor
  tags: string[]
}

export interface PlanBlob {
  digest: string
  size: number
  mediaType: string
}

export interface Plan {
  roots: PlanRoot[]
  /** children before parents, subjects before their referrers */
  manifests: PlanManifest[]
  /** each unique blob once */
  blobs: Map<string, PlanBlob>
  /** sum of the sizes of the unique blobs */
  uniqueBytes: number
  /** referrers a subject's list names that the source does not have, one line each: not copied */
  missing?: string[]
  /**
   * roots the destination holds whole under every tag (PlanOptions.atDestination), by key
   * (`registry/repository@digest` at the destination): not read from the source, so not in
   * `manifests`, their blobs not in `blobs`
   */
  atDestination?: Set<string>
}

export interface PlanOptions {
  /** follow OCI 1.1 referrers (signatures, SBOMs, attestations); default true */
  referrers?: boolean
  concurrency?: number
  /**
   * Called once per image manifest as soon as it is read, with the root it was first reached
   * from: its blobs are known before the rest of the plan (relocate starts them early).
   */
  onImage?(m: PlanManifest, root: PlanRoot): void
  /**
   * The destination's word on a root, asked while the source is read: its descriptor there when
   * it holds the root under its digest and under every tag the root gets, so that nothing of it
   * is left to copy. Such a root is not read from the source (an index is: its children may have
   * referrers); only its referrers are asked for, which may have come since. Undefined: read it.
   */
  atDestination?(root: PlanRoot): Promise<Descriptor | undefined> | undefined
}

// Layers that registries must not redistribute (Windows base layers) stay where their urls point.
const foreign = (d: Descriptor) =>
  /foreign|nondistributable/.test(d.mediaType) && (d.urls?.length ?? 0) > 0

/** a manifest at its destination, as Plan.atDestination and the executor key it */
export const manifestKey = (r: Repo, digest: string) => `${r.registry}/${r.repository}@${digest}`

function parseJson<T>(m: FetchedManifest, where: string): T {
  try {
    return JSON.parse(m.bytes.toString('utf8')) as T
  } catch {
    throw new KpiError('integrity', `manifest ${where} is not valid JSON`)
  }
}

/** A referrer a registry lists that it does not have (ImageSource.referrersMayBeStale). */
class StaleReferrer extends Error {}

export async function planImages(source: ImageSource, roots: PlanRoot[], opts: PlanOptions = {}): Promise<Plan> {
  const followReferrers = opts.referrers ?? true
  const pool = limit(opts.concurrency ?? 16)
  const visit = once<PlanManifest | undefined>()
  const ordered: PlanManifest[] = []
  const blobs = new Map<string, PlanBlob>()
  const missing = new Set<string>()
  const atDestination = new Set<string>()

  const walkReferrers = async (root: PlanRoot, src: Repo, dst: Repo, subject: Descriptor, where: string): Promise<void> => {
    const refs = await pool(() => source.referrers(src, subject.digest))
    // A registry without the referrers API lists them in the subject's fallback tag, an index
    // kept by clients: one whose referrer was deleted since still names it. What is gone
    // cannot be copied; the rest of the platform can, and is.
    await Promise.all(refs.map((r) => walk(root, src, dst, r.digest, `referrer ${r.digest.slice(0, 19)} of ${where}`, subject).catch((e: unknown) => {
      if (!(e instanceof StaleReferrer)) throw e
      missing.add(`referrer ${r.digest} of ${where} is listed for it but ${formatRepo(src)} does not have it (a stale entry of its referrers list): not copied`)
    })))
  }

  // Post-order walk: a manifest is appended after its children, referrers after their subject.
  // Undefined: a root the destination holds whole, not read.
  const walk = (root: PlanRoot, src: Repo, dst: Repo, digest: string, where: string, subject?: Descriptor, there?: Promise<Descriptor | undefined>): Promise<PlanManifest | undefined> =>
    visit(manifestKey(dst, digest), async () => {
      // a failed answer says nothing: read it
      const at = await there?.catch(() => undefined)
      if (at?.digest === digest && !isIndexMediaType(at.mediaType)) {
        atDestination.add(manifestKey(dst, digest))
        if (followReferrers) await walkReferrers(root, src, dst, {mediaType: at.mediaType, digest, size: at.size}, where)
        return undefined
      }
      const manifest = await pool(() => source.getManifest(src, digest)).catch((e: unknown) => {
        // only the referrer's own manifest: one of its parts missing is damage, as anywhere
        throw subject && source.referrersMayBeStale && isKpiError(e) && e.kind === 'not-found' ? new StaleReferrer() : e
      })
      const node: PlanManifest = {src, dst, manifest, blobs: [], children: [], subject, tags: []}
      if (isIndexMediaType(manifest.mediaType)) {
        const index = parseJson<ImageIndex>(manifest, where)
        if (!Array.isArray(index.manifests)) throw new KpiError('integrity', `index ${where} has no manifests list`)
        await Promise.all(index.manifests.map((d) => walk(root, src, dst, d.digest, `${where} (${platformName(d)})`)))
        node.children = index.manifests.map((d) => d.digest)
      } else {
        const image = parseJson<ImageManifest>(manifest, where)
        if (!image.config || !Array.isArray(image.layers)) {
          throw new KpiError('input', `${where} is not an OCI or Docker v2 image manifest (media type ${manifest.mediaType})`,
            {hint: 'only schema 2 manifests and indexes can be relocated'})
        }
        node.blobs = [image.config, ...image.layers].filter((d) => !foreign(d))
        for (const b of node.blobs) blobs.set(b.digest, {digest: b.digest, size: b.size, mediaType: b.mediaType})
        opts.onImage?.(node, root)
      }
      ordered.push(node)
      if (followReferrers) await walkReferrers(root, src, dst, {mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length}, where)
      return node
    })

  await Promise.all(
    roots.map(async (r) => {
      const node = await walk(r, r.src, r.dst, r.digest, r.ref, undefined, opts.atDestination?.(r))
      // one whole at the destination is there under every tag already
      if (node) for (const t of r.tags) if (!node.tags.includes(t)) node.tags.push(t)
    }),
  )
  let uniqueBytes = 0
  for (const b of blobs.values()) uniqueBytes += b.size
  return {roots: [...roots].sort((a, b) => byCodeUnit(a.path, b.path)), manifests: ordered, blobs, uniqueBytes, ...(missing.size ? {missing: [...missing]} : {}), ...(atDestination.size ? {atDestination} : {})}
}

export function platformName(d: Descriptor): string {
  const p = d.platform
  if (!p) return d.digest.slice(0, 19)
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/')
}
