/**
 * The one relocation action: every image of a bundle from somewhere to somewhere, and the
 * relocated lock. `from` and `to` are endpoints (registry, archive, OCI layout: see
 * registry-endpoints.ts, archive/import.ts, archive/export.ts) that bring their own steps as
 * hooks (an archive orders the plan, leaves out a delta's base, checks the base is at the
 * destination, writes its table of contents); this wires bundle → plan → hooks → execute → lock.
 */
import type {Bundle, LoadedBundle} from '../bundle/types.js'
import {bundleImages, mapBundleImages} from '../bundle/images.js'
import {byCodeUnit} from '../canonical.js'
import {KpiError} from '../errors.js'
import {parseReference, type Descriptor, type RegistryClient, type Repo} from '../oci/index.js'
import {noProgress, type OnEvent} from '../progress/events.js'
import type {ImageSink, ImageSource} from './endpoints.js'
import {createExecutor, type RelocationSummary} from './execute.js'
import {destinationRepo, formatDigestRef, type Destination} from './naming.js'
import {planImages, type Plan, type PlanRoot} from './plan.js'

/** Where images come from, with the steps that source needs. */
export interface RelocationFrom {
  open(onEvent: OnEvent): Promise<OpenedSource>
}

export interface OpenedSource {
  /** the bundle whose images move (an archive carries its own) */
  bundle: Bundle
  /** the bundle as loaded from disk, when it was (an archive target copies its files) */
  loaded?: LoadedBundle
  source: ImageSource
  /** images to move besides the bundle's, e.g. the bundle image itself; not in the lock */
  moreRoots?(destinationOf: (src: Repo) => Repo): PlanRoot[]
  /** checks the plan roots before planning (an archive: every root is archived) */
  checkRoots?(roots: PlanRoot[]): void
  /** reorders the plan (an archive: its manifests in archive order) */
  arrange?(plan: Plan): Plan
  /** after the target opened, before anything is copied (a delta archive: its base is at the destination) */
  beforeCopy?(plan: Plan, target: OpenedTarget<unknown>, onEvent: OnEvent): Promise<void>
  close?(): Promise<void>
}

/** Where images go, with the steps that destination needs; `X` is what it reports besides the summary. */
export interface RelocationTo<X> {
  /** each source repository's destination */
  readonly destination: Destination | ((src: Repo) => Repo)
  /**
   * Starts asking about the roots at the destination while the source is read (a registry:
   * whether each root manifest is there); its sink answers the copy's first question about each
   * root from that. It may return the sink it will open with and those answers, so that the copy
   * of an image missing there starts while the rest of the plan is read.
   */
  lookAhead?(roots: PlanRoot[]): LookAhead | void
  open(c: PlannedRelocation): Promise<OpenedTarget<X>>
}

export interface LookAhead {
  /** the sink open() returns */
  sink: ImageSink
  /** whether `root` is missing at the destination (asking does not use up the copy's answer) */
  missing(root: PlanRoot): Promise<boolean>
  /**
   * whether `root` has likely changed there, answered before `missing` (no tag of it names it):
   * its large blobs start on that answer; undefined where there is no such answer (no tags)
   */
  changed?(root: PlanRoot): Promise<boolean> | undefined
  /** the root's descriptor there when it holds the root under its digest and every tag (PlanOptions.atDestination) */
  atDestination?(root: PlanRoot): Promise<Descriptor | undefined> | undefined
}

export interface PlannedRelocation {
  bundle: Bundle
  loaded?: LoadedBundle
  source: ImageSource
  roots: PlanRoot[]
  plan: Plan
  referrers?: boolean
  concurrency?: number
  onEvent: OnEvent
}

export interface OpenedTarget<X> {
  sink: ImageSink
  /** the plan as the target will copy it, when it reorders it */
  plan?: Plan
  /** blobs it will receive, when not every blob of the plan (a delta) */
  blobs?: number
  /** a registry target: what a source's beforeCopy may ask of the destination */
  registry?: {client: RegistryClient; toRepo: string}
  /** after every image is copied (an archive writes its manifests, index and table of contents) */
  finish?(summary: RelocationSummary): Promise<X>
  /** the copy failed (an archive keeps its partial file for resume) */
  abort?(): Promise<void>
}

export interface RelocateOptions<X> {
  from: RelocationFrom
  to: RelocationTo<X>
  /** follow OCI 1.1 referrers (signatures, SBOMs); default true */
  referrers?: boolean
  concurrency?: number
  onEvent?: OnEvent
}

export interface RelocateResult<X = undefined> {
  /** the bundle with every reference at its destination */
  lock: Bundle
  /** the bundle relocated, with its source references */
  bundle: Bundle
  plan: Plan
  summary: RelocationSummary
  /** what the target reports (an archive: its files and table of contents) */
  target: X
}

/** The plan roots of a bundle: each image, its source repository and its destination. */
export function bundleRoots(bundle: Bundle, dest: Destination | ((src: Repo) => Repo)): PlanRoot[] {
  const roots: PlanRoot[] = []
  for (const {path, ref} of bundleImages(bundle)) {
    const parsed = parseReference(ref)
    if (!parsed.digest) throw new KpiError('input', `${path}: "${ref}" is not pinned by digest`, {hint: 'pin it as repo@sha256:<digest>'})
    const src: Repo = {registry: parsed.registry, repository: parsed.repository}
    const dst = typeof dest === 'function' ? dest(src) : destinationRepo(dest, src)
    roots.push({path, ref, src, dst, digest: parsed.digest, tags: parsed.tag ? [parsed.tag] : []})
  }
  return roots
}

/** The relocated lock: the bundle with every reference rewritten to its destination digest. */
export function lockFor(bundle: Bundle, roots: PlanRoot[]): Bundle {
  const byPath = new Map(roots.map((r) => [r.path, r]))
  const origins: Record<string, string> = {}
  const lock = mapBundleImages(bundle, (ref, path) => {
    const r = byPath.get(path)
    if (!r) throw new KpiError('internal', `no destination for ${path}`)
    const to = formatDigestRef(r.dst, r.digest)
    // a lock of a lock keeps the first origin
    origins[to] = bundle.origins?.[ref] ?? ref
    return to
  })
  return {...lock, kind: 'BundleLock', origins: Object.fromEntries(Object.entries(origins).sort(([a], [b]) => byCodeUnit(a, b)))}
}

/** layers uploaded at once while the plan is read (ExecuteOptions.layersBeforePlan) */
const EARLY_LAYERS = 2

export async function relocate<X = undefined>(o: RelocateOptions<X>): Promise<RelocateResult<X>> {
  const onEvent = o.onEvent ?? noProgress
  const from = await o.from.open(onEvent)
  try {
    const d = o.to.destination
    const roots = [...bundleRoots(from.bundle, d), ...(from.moreRoots?.(typeof d === 'function' ? d : (src) => destinationRepo(d, src)) ?? [])]
    from.checkRoots?.(roots)
    const ahead = o.to.lookAhead?.(roots)
    const copyOptions = {onEvent, concurrency: o.concurrency}
    // An image missing at a registry starts moving as soon as its manifest is read (the patch
    // release: its one changed layer used to wait for the other 40 images' manifests). Not where
    // the plan is reordered first (an archive's order) or checked first (a delta's base).
    const early = ahead && !from.arrange && !from.beforeCopy ? createExecutor(from.source, ahead.sink, {...copyOptions, largestFirst: true, layersBeforePlan: EARLY_LAYERS}) : undefined
    onEvent({type: 'phase', phase: 'plan', message: `reading ${roots.length} images from ${from.source.name}`})
    let plan: Plan
    let target: OpenedTarget<X>
    try {
      plan = await planImages(from.source, roots, {
        referrers: o.referrers,
        concurrency: o.concurrency,
        ...(early && ahead ? {onImage: (m, root) => early.start(m, ahead.missing(root), ahead.changed?.(root)), atDestination: ahead.atDestination} : {}),
      })
      for (const message of plan.missing ?? []) onEvent({type: 'warning', message})
      plan = from.arrange?.(plan) ?? plan
      target = await o.to.open({bundle: from.bundle, loaded: from.loaded, source: from.source, roots, plan, referrers: o.referrers, concurrency: o.concurrency, onEvent})
      if (early && target.sink !== ahead?.sink) throw new KpiError('internal', `${target.sink.name} opened with another sink than it looked ahead with`)
    } catch (e) {
      // what started early ends before the error is the run's
      await early?.stop(e)
      throw e
    }
    plan = target.plan ?? plan
    let summary: RelocationSummary
    let result: X
    try {
      await from.beforeCopy?.(plan, target as OpenedTarget<unknown>, onEvent)
      onEvent({type: 'phase', phase: 'copy', message: `${plan.manifests.length} manifests, ${target.blobs ?? plan.blobs.size} unique blobs to ${target.sink.name}`})
      // a target with its own order (an archive's writer) keeps the plan's order; an archive read
      // into a registry starts its largest blobs first like any copy (several blobs are read at
      // once either way; the last big one used to move alone for the last third of the run)
      summary = await (early ?? createExecutor(from.source, target.sink, {...copyOptions, largestFirst: !target.plan})).run(plan)
      result = (await target.finish?.(summary)) as X
    } catch (e) {
      await target.abort?.()
      throw e
    }
    return {lock: lockFor(from.bundle, plan.roots), bundle: from.bundle, plan, summary, target: result}
  } finally {
    await from.close?.()
  }
}
