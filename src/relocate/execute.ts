/**
 * Executes a plan against a sink. Each manifest waits for its blobs and its children, so the
 * destination never holds a manifest whose content is missing, whenever the run stops. Each
 * unique blob crosses the wire once: later repositories of the same registry mount it.
 */
import {Transform, type Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {KpiError, isKpiError, registryDetails} from '../errors.js'
import {backoffMs, DigestVerifier, type Descriptor, type Repo, type RetryPolicy} from '../oci/index.js'
import {noProgress, type OnEvent} from '../progress/events.js'
import type {ImageSink, ImageSource} from './endpoints.js'
import {limit, once} from '../pool.js'
import {uploadPool} from './upload-pool.js'
import {manifestKey, type Plan, type PlanManifest} from './plan.js'

export interface RelocationSummary {
  images: number
  /** of `images`, those the destination held whole under every tag: not read from the source (Plan.atDestination) */
  imagesThere: number
  manifests: {pushed: number; skipped: number}
  blobs: {copied: number; skipped: number; mounted: number}
  /** blob bytes that crossed the wire */
  bytesMoved: number
  /** sum of the sizes of the bundle's unique blobs */
  uniqueBytes: number
  durationMs: number
}

export interface ExecuteOptions {
  onEvent?: OnEvent
  /** manifest pushes and HEADs at once (blob uploads are bounded by the sink) */
  concurrency?: number
  /**
   * Waiting uploads start largest first rather than in plan order, so the biggest layer is not
   * left to move alone at the end (one connection, often capped per flow). Not for a sink that
   * writes in plan order (archives).
   */
  largestFirst?: boolean
  /**
   * Layers uploaded at once while the plan is still read (Executor.start()), until run() lets
   * the sink's full width go: the largest layers are known only then. With every layer started
   * as it was found, the benchmark platform's 560 MiB layer waited behind smaller ones found
   * first, and moved alone at the end (registry to registry 7.4-8.1 s against 7.3-7.7).
   */
  layersBeforePlan?: number
}

const repoKey = (r: Repo) => `${r.registry}/${r.repository}`

/** blobs this large start without waiting to learn whether mounts answer for HEADs */
const UNPROBED_BYTES = 16 << 20

/** a manifest refused for a blob this run placed (pushManifest): 3 more pushes, 0.1-0.8 s apart */
const manifestRetry: RetryPolicy = {retries: 3, baseMs: 200, maxMs: 2000}

export async function executePlan(plan: Plan, source: ImageSource, sink: ImageSink, opts: ExecuteOptions = {}): Promise<RelocationSummary> {
  return createExecutor(source, sink, opts).run(plan)
}

/**
 * An executor made before its plan is complete can start an image's blobs while the rest of the
 * plan is still read from the source (start()), when it is told the image is missing at the
 * sink; run() then does the rest, and finds those blobs placed or on their way.
 */
export interface Executor {
  /**
   * Places the blobs of an image manifest of the plan being read, once `missing` says its image
   * is not at the sink (a failed or false answer starts nothing). Not for a sink that writes in
   * plan order, nor a plan whose copy must wait for a check (a delta archive's base). Its large
   * blobs start sooner, once `changed` says yes.
   */
  start(m: PlanManifest, missing: Promise<boolean>, changed?: Promise<boolean>): void
  /** the plan is complete: copy it */
  run(plan: Plan): Promise<RelocationSummary>
  /** the plan failed: start nothing more, and return once what started has ended */
  stop(reason: unknown): Promise<void>
}

export function createExecutor(source: ImageSource, sink: ImageSink, opts: ExecuteOptions = {}): Executor {
  const started = Date.now()
  const onEvent = opts.onEvent ?? noProgress
  const uploads = uploadPool(sink.concurrency, {bySize: opts.largestFirst, start: opts.layersBeforePlan})
  const requests = limit(opts.concurrency ?? 16)
  const summary: RelocationSummary = {
    images: 0,
    imagesThere: 0,
    manifests: {pushed: 0, skipped: 0},
    blobs: {copied: 0, skipped: 0, mounted: 0},
    bytesMoved: 0,
    uniqueBytes: 0,
    durationMs: 0,
  }
  let failure: unknown
  const guard = <T>(f: () => Promise<T>) => () => {
    // once something failed, start nothing new: the run ends with what it has, all consistent
    if (failure) return Promise.reject(failure)
    return f()
  }

  const counted = (digest: string, stream: Readable): Readable => {
    let pending = 0
    const add = (n: number) => {
      pending += n
      if (pending >= 1 << 20) {
        onEvent({type: 'bytes', digest, bytes: pending})
        pending = 0
      }
    }
    const flush = () => {
      if (pending) onEvent({type: 'bytes', digest, bytes: pending})
      pending = 0
    }
    // a verifying stream counts for us: no second pass-through stream per chunk
    if (stream instanceof DigestVerifier && !stream.onBytes) {
      stream.onBytes = add
      stream.once('end', flush)
      return stream
    }
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        add(chunk.length)
        cb(null, chunk)
      },
      flush(cb) {
        flush()
        cb()
      },
    })
    stream.on('error', (e) => counter.destroy(e))
    // pipe() does not destroy the source when the upload gives up on its body (a reset connection,
    // a refused upload): without this the source's response stays open, holding its connection,
    // and a run whose every upload failed could end with nothing left to settle it
    counter.once('close', () => {
      if (!stream.destroyed) stream.destroy()
    })
    return stream.pipe(counter)
  }

  // a sink that checks digests itself refuses a wrong blob in its own words: say where it came from
  const fromSource = (e: unknown): unknown =>
    isKpiError(e) && e.kind === 'integrity' && sink.verifiesDigests && !e.message.includes(source.name)
      ? new KpiError('integrity', `${e.message} (read from ${source.name})`, {hint: source.damagedHint ?? e.hint, cause: e, details: e.details})
      : e
  const record = (d: Descriptor, action: 'skipped' | 'mounted') => {
    summary.blobs[action]++
    onEvent({type: 'blob', digest: d.digest, size: d.size, action})
  }
  /** uploads `d`, or with `mountFrom` first mounts it from there (see ImageSink.mountsCheck) */
  const upload = async (dst: Repo, d: Descriptor, src: Repo, mountFrom?: string) => {
    // its connection opens while the upload session does
    sink.prepare?.(1)
    const verify = sink.verifiesDigests ? {verify: false} : undefined
    const open = async () => {
      if (failure) throw failure
      const stream = counted(d.digest, await source.getBlob(src, d.digest, d.size, verify))
      reading.add(stream)
      stream.once('close', () => reading.delete(stream))
      return stream
    }
    const how = await uploads(d.size, guard(() => sink.putBlob(dst, d.digest, d.size, open, mountFrom ? {mountFrom} : undefined)))
      .catch((e: unknown) => { throw fromSource(e) })
    // mounted from its own repository: it was there already
    if (how === 'mounted') return record(d, mountFrom === dst.repository ? 'skipped' : 'mounted')
    summary.blobs.copied++
    summary.bytesMoved += d.size
    onEvent({type: 'blob', digest: d.digest, size: d.size, action: 'copied'})
  }
  // once a blob is known to be in dst, the sink may learn that a mount answers for a HEAD
  const learn = (dst: Repo, d: Descriptor) => sink.probeMounts ? requests(guard(() => sink.probeMounts!(dst, d.digest))) : undefined

  // The first repository that needs a blob gets it by HEAD, same-registry mount or upload; or,
  // where a mount answers for the HEAD, by one mount (from the source, or from dst itself).
  const place = async (dst: Repo, d: Descriptor, src: Repo): Promise<void> => {
    const sameRegistry = sink.registry === src.registry
    if (sink.mountsCheck?.()) return upload(dst, d, src, sameRegistry ? src.repository : dst.repository)
    if (await requests(guard(() => sink.hasBlob(dst, d.digest)))) {
      await learn(dst, d)
      return record(d, 'skipped')
    }
    if (sink.mountBlob && sameRegistry && (await requests(guard(() => sink.mountBlob!(dst, d.digest, src.repository))))) {
      return record(d, 'mounted')
    }
    await upload(dst, d, src)
    await learn(dst, d)
  }
  const firstHome = once<Repo>()
  const blobDone = once<void>()
  const ensureBlob = (dst: Repo, d: Descriptor, src: Repo): Promise<void> =>
    blobDone(`${repoKey(dst)}@${d.digest}`, async () => {
      let placedHere = false
      const home = await firstHome(d.digest, async () => {
        await place(dst, d, src)
        placedHere = true
        return dst
      })
      if (placedHere || repoKey(home) === repoKey(dst)) return
      if (sink.mountsCheck?.()) return upload(dst, d, src, home.repository)
      if (await requests(guard(() => sink.hasBlob(dst, d.digest)))) return record(d, 'skipped')
      if (sink.mountBlob && (await requests(guard(() => sink.mountBlob!(dst, d.digest, home.repository))))) return record(d, 'mounted')
      await upload(dst, d, src)
    })

  /**
   * A registry may refuse a manifest for a reference this run has just placed there: distribution
   * rewrites a blob's link file in place (truncate, then write) on each upload or mount of it, and
   * a manifest checked in between reads an empty link (seen once in CI under load). When every
   * blob and child it names answers a HEAD, the manifest is pushed again, up to 3 more times.
   */
  const pushManifest = async (m: PlanManifest, exists: boolean): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await requests(guard(() => sink.putManifest(m.dst, m.manifest, m.tags, exists)))
      } catch (e) {
        if (attempt >= manifestRetry.retries || !registryDetails(e)?.codes?.includes('MANIFEST_BLOB_UNKNOWN')) throw e
        await sleep(backoffMs(attempt, manifestRetry))
        const present = await Promise.all([
          ...m.blobs.map((b) => requests(guard(() => sink.hasBlob(m.dst, b.digest)))),
          ...m.children.map((c) => requests(guard(() => sink.hasManifest(m.dst, c)))),
        ])
        if (present.includes(false)) throw e
      }
    }
  }

  /** a manifest at its destination: repo@digest */
  const keyOf = (m: PlanManifest): string => manifestKey(m.dst, m.manifest.digest)
  /** manifests this run has seen missing at the sink */
  const knownMissing = new Set<string>()
  const byKey = new Map<string, PlanManifest>()
  const manifestDone = once<void>()
  /** manifests found whole at the sink (see below) */
  const done = new Set<string>()
  /** roots the plan found whole at the sink and did not read (Plan.atDestination) */
  let atDestination: ReadonlySet<string> = new Set()

  /** the tags of `m` that do not name it at the sink; all of them where the sink cannot tell */
  const staleTags = async (m: PlanManifest): Promise<string[]> => {
    if (!sink.tagged) return m.tags
    const named = await Promise.all(m.tags.map((t) => requests(guard(() => sink.tagged!(m.dst, t)))))
    return m.tags.filter((_, i) => named[i]?.digest !== m.manifest.digest)
  }
  /**
   * A tagged manifest found whole at the sink: its content is there, but a tag may be missing
   * (pushed before untagged, or under another tag) or name an older digest. Counted as skipped,
   * as an existing manifest whose tags are set is on the way below.
   */
  const retag = async (m: PlanManifest): Promise<void> => {
    const stale = await staleTags(m)
    if (stale.length) await pushManifest({...m, tags: stale}, true)
    summary.manifests.skipped++
  }

  const ensureManifest = (m: PlanManifest): Promise<void> =>
    manifestDone(keyOf(m), async () => {
      if (done.has(keyOf(m))) return retag(m)
      const deps: Array<Promise<void>> = m.blobs.map((b) => ensureBlob(m.dst, b, m.src))
      for (const c of m.children) {
        const child = byKey.get(manifestKey(m.dst, c))
        if (child) deps.push(ensureManifest(child))
        else if (!atDestination.has(manifestKey(m.dst, c))) throw new KpiError('internal', `plan lacks child ${c} of ${m.manifest.digest}`)
      }
      if (m.subject) {
        const subject = byKey.get(manifestKey(m.dst, m.subject.digest))
        if (subject) deps.push(ensureManifest(subject))
      }
      await settleAll(deps)
      const exists = !knownMissing.has(keyOf(m)) && (await requests(guard(() => sink.hasManifest(m.dst, m.manifest.digest))))
      if (exists && m.tags.length === 0) {
        summary.manifests.skipped++
      } else {
        await pushManifest(m, exists)
        if (exists) summary.manifests.skipped++
        else summary.manifests.pushed++
      }
      if (m.subject && sink.linkReferrer) {
        const desc: Descriptor = {mediaType: m.manifest.mediaType, digest: m.manifest.digest, size: m.manifest.bytes.length}
        const artifactType = artifactTypeOf(m.manifest.bytes)
        if (artifactType) desc.artifactType = artifactType
        await requests(guard(() => sink.linkReferrer!(m.dst, m.subject!.digest, desc)))
      }
    })

  /**
   * Whether a mount answers for a HEAD at this sink is learned from the smallest blob to place
   * (of the plan, or of the first image started early), before the others ask (a few requests
   * first; then one request per blob fewer)
   */
  let probing: Promise<void> | undefined
  const probe = (ms: PlanManifest[]): Promise<void> => probing ??= (async () => {
    if (!sink.probeMounts) return
    let first: {m: PlanManifest; b: Descriptor} | undefined
    for (const m of ms) {
      if (done.has(keyOf(m))) continue
      for (const b of m.blobs) if (b.size < UNPROBED_BYTES && (!first || b.size < first.b.size)) first = {m, b}
    }
    if (!first) return
    const {m, b} = first
    // a failure here is not the run's: the blob is placed (and retried) again with the others
    await place(m.dst, b, m.src).then(() => {
      void firstHome(b.digest, async () => m.dst)
      void blobDone(`${repoKey(m.dst)}@${b.digest}`, async () => {})
    }, () => {})
  })()

  /**
   * Large blobs do not wait for the probe: one request more (a HEAD) is nothing beside their
   * bytes, and the probe's chain of requests (a blob placed, then a mount asked) took 80-100 ms of
   * the patch release's 0.9 s, during which its one big changed layer waited.
   */
  const placeLarge = (m: PlanManifest) => {
    for (const b of m.blobs) if (b.size >= UNPROBED_BYTES) void ensureBlob(m.dst, b, m.src).catch(() => {})
  }

  /** blobs started before the plan was complete */
  const early: Array<Promise<void>> = []
  /** blob streams being read, ended by stop() */
  const reading = new Set<Readable>()

  const run = async (plan: Plan): Promise<RelocationSummary> => {
    uploads.widenTo(sink.concurrency)
    summary.images = plan.roots.length
    summary.uniqueBytes = plan.uniqueBytes
    atDestination = plan.atDestination ?? atDestination
    summary.imagesThere = atDestination.size
    summary.manifests.skipped += atDestination.size
    for (const m of plan.manifests) byKey.set(keyOf(m), m)
    // An image already at a sink that guarantees content (the registry refused its manifest until
    // every blob and child was there) is done whole: one HEAD instead of one per blob and manifest.
    // A root found missing here is not asked about again before it is pushed.
    if (sink.manifestImpliesContent) {
      const rootKeys = new Set(plan.roots.map((r) => manifestKey(r.dst, r.digest)))
      const roots = plan.manifests.filter((m) => rootKeys.has(keyOf(m)))
      await settleAll(roots.map(async (m) => {
        if (!(await requests(() => sink.hasManifest(m.dst, m.manifest.digest)))) {
          knownMissing.add(keyOf(m))
          return
        }
        const skipTree = (n: PlanManifest) => {
          done.add(keyOf(n))
          // one with tags is settled with the others (retag), where a failure is the run's
          if (n.tags.length === 0) {
            void manifestDone(keyOf(n), async () => {
              summary.manifests.skipped++
            })
          }
          for (const b of n.blobs) void blobDone(`${repoKey(n.dst)}@${b.digest}`, async () => record(b, 'skipped'))
          for (const c of n.children) {
            const child = byKey.get(manifestKey(n.dst, c))
            if (child) skipTree(child)
          }
        }
        skipTree(m)
      }))
    }

    try {
      const probed = probe(plan.manifests)
      for (const m of plan.manifests) if (!done.has(keyOf(m))) placeLarge(m)
      await probed
      await settleAll(plan.manifests.map((m) => ensureManifest(m).catch((e) => {
        failure ??= e
        throw e
      })))
      await sink.close?.()
    } finally {
      await Promise.allSettled(early)
      summary.durationMs = Date.now() - started
    }
    for (const r of plan.roots) onEvent({type: 'image-done', image: r.path, digest: r.digest})
    return summary
  }

  return {
    run,
    start(m, missing, changed) {
      // the first image to copy opens connections for its uploads while its blobs are asked about
      const prepare = () => sink.prepare?.(opts.layersBeforePlan ?? 1)
      // A root no tag names (it changed) most likely is not there by digest either: its large
      // blobs start now, each asked about (HEAD) first, which finds them there if it is after all
      if (changed) {
        early.push(changed.then((yes) => {
          if (!yes || failure) return
          prepare()
          placeLarge(m)
        }, () => {}))
      }
      early.push(missing.then(async (yes) => {
        if (!yes || failure) return
        prepare()
        const probed = probe([m])
        placeLarge(m)
        await probed
        await settleAll(m.blobs.map((b) => ensureBlob(m.dst, b, m.src)))
      }, () => {
        // the copy asks again, and reports the failure in its place
      }).catch((e: unknown) => {
        failure ??= e
      }))
    },
    async stop(reason) {
      failure ??= reason
      for (const s of reading) s.destroy(reason instanceof Error ? reason : new Error(String(reason)))
      await Promise.allSettled(early)
    },
  }
}

/** Like Promise.all, but waits for every promise to settle before rejecting with the first error. */
async function settleAll(ps: Array<Promise<void>>): Promise<void> {
  const results = await Promise.allSettled(ps)
  const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (bad) throw bad.reason
}

export function artifactTypeOf(bytes: Buffer): string | undefined {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as {artifactType?: string; config?: {mediaType?: string}}
    return m.artifactType ?? m.config?.mediaType
  } catch {
    return undefined
  }
}
