/**
 * The relocate action: every image of a bundle to a destination, and the relocated lock.
 * Sources and sinks are chosen by the caller (registry, archive, OCI layout); this wires
 * bundle → plan → execute → lock.
 */
import type {Bundle} from '../bundle/types.js'
import {bundleImages, mapBundleImages} from '../bundle/images.js'
import {KpiError} from '../errors.js'
import {parseReference, type Repo} from '../oci/index.js'
import type {OnEvent} from '../progress/events.js'
import type {ImageSink, ImageSource} from './endpoints.js'
import {executePlan, type RelocationSummary} from './execute.js'
import {destinationRepo, formatDigestRef, type Destination} from './naming.js'
import {planImages, type Plan, type PlanRoot} from './plan.js'

export interface RelocateOptions {
  referrers?: boolean
  concurrency?: number
  onEvent?: OnEvent
}

export interface RelocateResult {
  lock: Bundle
  plan: Plan
  summary: RelocationSummary
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
  return {...lock, kind: 'BundleLock', origins: Object.fromEntries(Object.entries(origins).sort(([a], [b]) => a.localeCompare(b)))}
}

export async function relocate(bundle: Bundle, source: ImageSource, sink: ImageSink, roots: PlanRoot[], opts: RelocateOptions = {}): Promise<RelocateResult> {
  opts.onEvent?.({type: 'phase', phase: 'plan', message: `reading ${roots.length} images from ${source.name}`})
  const plan = await planImages(source, roots, {referrers: opts.referrers, concurrency: opts.concurrency})
  opts.onEvent?.({type: 'phase', phase: 'copy', message: `${plan.manifests.length} manifests, ${plan.blobs.size} unique blobs to ${sink.name}`})
  const summary = await executePlan(plan, source, sink, {onEvent: opts.onEvent, concurrency: opts.concurrency})
  return {lock: lockFor(bundle, plan.roots), plan, summary}
}
