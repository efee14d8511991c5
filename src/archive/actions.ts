/**
 * The air-gap actions over the relocation engine:
 *   registry -> archive      relocateToArchive (optionally a delta against an older version)
 *   archive  -> registry     relocateFromArchive (contacts no registry but the destination)
 *   OCI layout dir -> registry  relocateFromOciLayout
 * Each gives the same lock as registry-to-registry relocation to the same --to-repo.
 */
import {mapBundleImages} from '../bundle/images.js'
import type {Bundle, LoadedBundle} from '../bundle/types.js'
import {KpiError, isKpiError} from '../errors.js'
import {type Descriptor, digestOf, formatReference, type ImageIndex, isIndexMediaType, MediaTypes, parseReference, type Platform, type RegistryClient, type Repo} from '../oci/index.js'
import {noProgress, type OnEvent} from '../progress/events.js'
import type {ImageSource} from '../relocate/endpoints.js'
import {artifactTypeOf, executePlan, type RelocationSummary} from '../relocate/execute.js'
import {parseDestination} from '../relocate/naming.js'
import {planImages, type Plan, type PlanManifest, type PlanRoot} from '../relocate/plan.js'
import {registrySink, registrySource} from '../relocate/registry-endpoints.js'
import {bundleRoots, lockFor, relocate} from '../relocate/relocate.js'
import {collectBundleFiles, type BundleFile} from './bundle-files.js'
import {openOciLayout} from './layout.js'
import {blobOrder, manifestOrder, orderPlan} from './order.js'
import {openArchive, type OpenedArchive} from './reader.js'
import {
  BUNDLE_PREFIX, REF_NAME, TOC_FORMAT, platformString,
  type Toc, type TocBlob, type TocImage,
} from './toc.js'
import {createArchiveSink, type ArchiveInfo, type ArchiveSink} from './writer.js'

export interface ToArchiveOptions {
  bundle: LoadedBundle
  file: string
  /** reaches the source registries */
  client?: RegistryClient
  /** read images from here instead of the registries (e.g. an OCI layout directory) */
  source?: ImageSource
  /** a delta: leave out every blob this older bundle (or its relocated lock) already has */
  since?: LoadedBundle
  /** continue FILE.partial of an interrupted run */
  resume?: boolean
  /** split into parts of this many bytes */
  splitSize?: number
  /** follow OCI 1.1 referrers (signatures, SBOMs); default true */
  referrers?: boolean
  concurrency?: number
  onEvent?: OnEvent
  /** interrupts the run; FILE.partial stays for resume */
  signal?: AbortSignal
  /** recorded in the toc as createdBy */
  version?: string
}

export interface ToArchiveResult {
  archive: ArchiveInfo
  toc: Toc
  summary: RelocationSummary
}

/** Where and how images are pushed, for every import into a registry. */
interface ToRegistryOptions {
  /** REGISTRY/PREFIX */
  toRepo: string
  /** reaches the destination registry (and nothing else is asked of it) */
  client: RegistryClient
  referrers?: boolean
  concurrency?: number
  /** uploads at once to the destination */
  uploads?: number
  onEvent?: OnEvent
}

export interface FromArchiveOptions extends ToRegistryOptions {
  file: string
}

export interface FromArchiveResult {
  lock: Bundle
  summary: RelocationSummary
  toc: Toc
  /** the bundle the archive carries, with source references */
  bundle: Bundle
  bundleFiles: BundleFile[]
}

const MAX_CONFIG = 1 << 20

/** The source references of a bundle or a relocated lock (a lock's `origins` say where each came from). */
export function sourceBundle(b: Bundle): Bundle {
  if (!b.origins) return b
  const origins = b.origins
  return mapBundleImages(b, (ref) => origins[ref] ?? ref)
}

export async function relocateToArchive(o: ToArchiveOptions): Promise<ToArchiveResult> {
  const onEvent = o.onEvent ?? noProgress
  // images are read where the bundle (or lock) given says they are
  const bundle = o.bundle.bundle
  if (!o.source && !o.client) throw new KpiError('internal', 'relocateToArchive needs a client or a source')
  const source = o.source ?? registrySource(o.client!)
  // the archive keeps the source names: the destination is chosen at import
  const roots = bundleRoots(bundle, (src) => src)
  onEvent({type: 'phase', phase: 'plan', message: `reading ${roots.length} images from ${source.name}`})
  const plan = orderPlan(await planImages(source, roots, {referrers: o.referrers, concurrency: o.concurrency}))

  let exclude = new Set<string>()
  let since: Toc['since']
  if (o.since) {
    // a lock of the base names the customer's registry: its origins say where the images came from
    const base = sourceBundle(o.since.bundle)
    since = {name: base.metadata.name, version: base.metadata.version}
    onEvent({type: 'phase', phase: 'plan', message: `reading the base version ${since.name} ${since.version}`})
    let basePlan: Plan
    try {
      basePlan = await planImages(source, bundleRoots(base, (src) => src), {referrers: o.referrers, concurrency: o.concurrency})
    } catch (e) {
      throw new KpiError(isKpiError(e) ? e.kind : 'failed', `reading the base version ${since.name} ${since.version} for the delta: ${isKpiError(e) ? e.message : String(e)}`, {
        hint: 'the base version\'s images must still be in the source registry; or make a full archive without --since',
        cause: e,
      })
    }
    exclude = new Set([...basePlan.blobs.keys()].filter((d) => plan.blobs.has(d)))
  }

  const files = await collectBundleFiles(o.bundle, onEvent)
  const order = blobOrder(plan).filter((b) => !exclude.has(b.digest))
  const sink = await createArchiveSink(o.file, {
    splitSize: o.splitSize, resume: o.resume, exclude, order: order.map((b) => b.digest), onEvent, signal: o.signal,
  })
  onEvent({type: 'phase', phase: 'copy', message: `${plan.manifests.length} manifests, ${order.length} blobs to ${sink.name}`})
  let summary: RelocationSummary
  let toc: Toc
  let archive: ArchiveInfo
  try {
    summary = await executePlan(plan, source, sink, {onEvent, concurrency: o.concurrency})
    toc = await buildToc({bundle, plan, roots, exclude, files, since, version: o.version, sink, source})
    archive = await sink.finish({
      manifests: manifestOrder(plan),
      index: Buffer.from(JSON.stringify(indexFor(toc), null, 2) + '\n'),
      files: files.map((f) => ({name: BUNDLE_PREFIX + f.path, bytes: f.bytes})),
      toc: Buffer.from(JSON.stringify(toc, null, 2) + '\n'),
    })
  } catch (e) {
    await sink.abort()
    throw e
  }
  return {archive, toc, summary}
}

/** The name an image gets in index.json: its full normalised reference (skopeo's oci-archive:FILE:NAME). */
export function refName(ref: string): string {
  return formatReference(parseReference(ref))
}

function indexFor(toc: Toc): ImageIndex {
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

interface TocInput {
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

async function buildToc(t: TocInput): Promise<Toc> {
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

// ---- import ----

export async function relocateFromArchive(o: FromArchiveOptions): Promise<FromArchiveResult> {
  const onEvent = o.onEvent ?? noProgress
  const dest = parseDestination(o.toRepo)
  const archive = await openArchive(o.file)
  try {
    const roots = bundleRoots(archive.bundle, dest)
    for (const r of roots) {
      if (!archive.toc.images.some((i) => i.digest === r.digest)) {
        throw new KpiError('input', `archive ${o.file}: the bundle's ${r.path} (${r.digest}) is not among the archived images`, {hint: 'the archive is inconsistent; make it again'})
      }
    }
    onEvent({type: 'phase', phase: 'plan', message: `reading ${roots.length} images from ${archive.source.name}`})
    const plan = orderPlan(await planImages(archive.source, roots, {referrers: o.referrers, concurrency: o.concurrency}))
    const sink = registrySink(o.client, dest.registry, o.uploads)
    await ensureBase(plan, archive, o.client, o.toRepo, onEvent)
    onEvent({type: 'phase', phase: 'copy', message: `${plan.manifests.length} manifests, ${plan.blobs.size} unique blobs to ${sink.name}`})
    const summary = await executePlan(plan, archive.source, sink, {onEvent, concurrency: o.concurrency})
    return {lock: lockFor(archive.bundle, plan.roots), summary, toc: archive.toc, bundle: archive.bundle, bundleFiles: archive.bundleFiles}
  } finally {
    await archive.close()
  }
}

/**
 * A delta archive lacks the blobs of its base version: each must already be in the destination
 * repository that needs it, or be mounted there from another repository of the destination.
 * Anything still missing stops the import here, before any manifest is pushed.
 */
async function ensureBase(plan: Plan, archive: OpenedArchive, client: RegistryClient, toRepo: string, onEvent: OnEvent): Promise<void> {
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

export interface FromLayoutOptions extends ToRegistryOptions {
  bundle: LoadedBundle
  dir: string
}

/** Relocates a bundle's images from an OCI layout directory (e.g. written by skopeo) to a registry. */
export async function relocateFromOciLayout(o: FromLayoutOptions): Promise<{lock: Bundle; summary: RelocationSummary}> {
  const dest = parseDestination(o.toRepo)
  const layout = await openOciLayout(o.dir)
  const {lock, summary} = await relocate(o.bundle.bundle, layout.source, registrySink(o.client, dest.registry, o.uploads), bundleRoots(o.bundle.bundle, dest),
    {referrers: o.referrers, concurrency: o.concurrency, onEvent: o.onEvent})
  return {lock, summary}
}
