/**
 * The table of contents of an archive (toc.json) and its index.json, built from the relocation
 * plan after every blob is in: per image its manifests, blobs, bytes and platforms; the
 * manifests in archive order; the blobs it holds and those a delta leaves to its base.
 */
import type {Bundle, BundleFile} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import {type Descriptor, digestOf, formatReference, type ImageIndex, isIndexMediaType, MediaTypes, parseReference, type Platform, type Repo} from '../oci/index.js'
import type {ImageSource} from '../relocate/endpoints.js'
import {artifactTypeOf} from '../relocate/execute.js'
import type {Plan, PlanManifest, PlanRoot} from '../relocate/plan.js'
import {blobOrder, manifestOrder} from './order.js'
import {REF_NAME, TOC_FORMAT, platformString, type Toc, type TocBlob, type TocImage} from './toc.js'
import type {ArchiveSink} from './writer.js'

const MAX_CONFIG = 1 << 20

/** The name an image gets in index.json: its full normalised reference (skopeo's oci-archive:FILE:NAME). */
export function refName(ref: string): string {
  return formatReference(parseReference(ref))
}

export function indexFor(toc: Toc): ImageIndex {
  const manifests: Descriptor[] = []
  const named = new Set<string>()
  for (const img of toc.images) {
    if (named.has(img.name)) continue
    named.add(img.name)
    const size = toc.manifests.find((m) => m.digest === img.digest)?.size ?? 0
    manifests.push({mediaType: img.mediaType, digest: img.digest, size, annotations: {[REF_NAME]: img.name}})
  }
  return {schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests}
}

export interface TocInput {
  bundle: Bundle
  plan: Plan
  roots: PlanRoot[]
  exclude: Set<string>
  files: BundleFile[]
  since?: Toc['since']
  version?: string
  sink: ArchiveSink
  source: ImageSource
}

export async function buildToc(t: TocInput): Promise<Toc> {
  const key = (r: Repo, d: string) => `${r.registry}/${r.repository}@${d}`
  const byKey = new Map<string, PlanManifest>()
  const referrersOf = new Map<string, PlanManifest[]>()
  for (const m of t.plan.manifests) {
    byKey.set(key(m.dst, m.manifest.digest), m)
    if (m.subject) {
      const k = key(m.dst, m.subject.digest)
      referrersOf.set(k, [...(referrersOf.get(k) ?? []), m])
    }
  }

  const images: TocImage[] = []
  for (const r of t.roots) {
    const root = byKey.get(key(r.dst, r.digest))
    if (!root) throw new KpiError('internal', `plan lacks ${r.ref}`)
    const manifests: string[] = []
    const blobs = new Map<string, number>()
    const seen = new Set<string>()
    const walk = (m: PlanManifest | undefined) => {
      if (!m || seen.has(m.manifest.digest)) return
      seen.add(m.manifest.digest)
      manifests.push(m.manifest.digest)
      for (const b of m.blobs) blobs.set(b.digest, b.size)
      for (const c of m.children) walk(byKey.get(key(m.dst, c)))
      for (const x of referrersOf.get(key(m.dst, m.manifest.digest)) ?? []) walk(x)
    }
    walk(root)
    const blobList = [...blobs].map(([digest, size]) => ({digest, size}))
    images.push({
      path: r.path,
      ref: r.ref,
      name: refName(r.ref),
      digest: r.digest,
      mediaType: root.manifest.mediaType,
      platforms: await platformsOf(root, t),
      manifests,
      blobs: blobList,
      bytes: blobList.reduce((a, b) => a + b.size, 0),
    })
  }

  const manifests = manifestOrder(t.plan).map((d) => {
    const m = t.plan.manifests.find((x) => x.manifest.digest === d)!
    const entry: Toc['manifests'][number] = {digest: d, mediaType: m.manifest.mediaType, size: m.manifest.bytes.length}
    if (m.subject) entry.subject = m.subject.digest
    const at = artifactTypeOf(m.manifest.bytes)
    if (m.subject && at) entry.artifactType = at
    return entry
  })
  const all = blobOrder(t.plan)
  const blobs: TocBlob[] = all.filter((b) => !t.exclude.has(b.digest))
  const external: TocBlob[] = all.filter((b) => t.exclude.has(b.digest))
  const sum = (l: Array<{size: number}>) => l.reduce((a, b) => a + b.size, 0)
  const toc: Toc = {
    format: TOC_FORMAT,
    createdBy: `kpi ${t.version ?? ''}`.trim(),
    bundle: {
      name: t.bundle.metadata.name,
      version: t.bundle.metadata.version,
      kind: t.bundle.kind,
      files: t.files.map((f) => ({path: f.path, size: f.bytes.length, digest: digestOf(f.bytes)})),
    },
    images,
    manifests,
    blobs,
    external,
    totalBytes: images.reduce((a, i) => a + i.bytes, 0),
    uniqueBytes: sum(all),
    archivedBytes: sum(blobs),
  }
  if (t.since) toc.since = t.since
  return toc
}

/** An index's platforms from its descriptors; a single image's from its config. */
async function platformsOf(m: PlanManifest, t: TocInput): Promise<string[]> {
  if (isIndexMediaType(m.manifest.mediaType)) {
    const index = JSON.parse(m.manifest.bytes.toString('utf8')) as ImageIndex
    // buildkit's attestation manifests say unknown/unknown: not a platform
    return index.manifests.map((d) => platformString(d.platform)).filter((p): p is string => !!p && !p.startsWith('unknown/'))
  }
  const config = m.blobs[0]
  if (!config || config.size > MAX_CONFIG) return []
  let bytes = await t.sink.readBlob(config.digest, MAX_CONFIG)
  if (!bytes) {
    // a delta leaves the config out when the base has it: ask the source (it is small)
    try {
      const chunks: Buffer[] = []
      for await (const c of await t.source.getBlob(m.src, config.digest, config.size)) chunks.push(c as Buffer)
      bytes = Buffer.concat(chunks)
    } catch {
      return []
    }
  }
  try {
    const c = JSON.parse(bytes.toString('utf8')) as Platform
    const p = platformString(c)
    return p ? [p] : []
  } catch {
    return []
  }
}
