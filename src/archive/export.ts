/**
 * An archive as a relocation target: images keep their source names (the destination is chosen
 * at import), the plan is put in a deterministic order (a resumed run gives the same bytes), a
 * delta leaves out its base's blobs, and the table of contents, index and bundle files are
 * written once every blob is in.
 */
import type {LoadedBundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import type {RelocationTo} from '../relocate/relocate.js'
import {collectBundleFiles} from './bundle-files.js'
import {deltaExclusions} from './delta.js'
import {blobOrder, manifestOrder, orderPlan} from './order.js'
import {BUNDLE_PREFIX, type Toc} from './toc.js'
import {buildToc, indexFor} from './toc-build.js'
import {createArchiveSink, type ArchiveInfo} from './writer.js'

export interface ToArchiveTargetOptions {
  /** a delta: leave out every blob this older bundle (or its relocated lock) already has */
  since?: LoadedBundle
  /** continue FILE.partial of an interrupted run */
  resume?: boolean
  /** split into parts of this many bytes */
  splitSize?: number
  /** false: write through the page cache even where O_DIRECT works (parts.ts) */
  direct?: boolean
  /** layers written at once at most (writer.ts: it starts with fewer, and adds while the source is slow) */
  concurrency?: number
  /** interrupts the run; FILE.partial stays for resume */
  signal?: AbortSignal
  /** recorded in the toc as createdBy */
  version?: string
}

export function toArchive(file: string, o: ToArchiveTargetOptions = {}): RelocationTo<{archive: ArchiveInfo; toc: Toc}> {
  return {
    destination: (src) => src,
    async open(c) {
      if (!c.loaded) throw new KpiError('internal', 'an archive is written from a loaded bundle')
      const plan = orderPlan(c.plan)
      const delta = o.since ? await deltaExclusions(plan, o.since, c.source, c) : undefined
      const exclude = delta?.exclude ?? new Set<string>()
      const files = await collectBundleFiles(c.loaded, c.onEvent)
      const order = blobOrder(plan).filter((b) => !exclude.has(b.digest))
      const sink = await createArchiveSink(file, {
        splitSize: o.splitSize, resume: o.resume, direct: o.direct, concurrency: o.concurrency, exclude, order, onEvent: c.onEvent, signal: o.signal,
      })
      return {
        sink,
        plan,
        blobs: order.length,
        finish: async () => {
          const toc = await buildToc({bundle: c.bundle, plan, roots: c.roots, exclude, files, since: delta?.since, version: o.version, sink, source: c.source})
          const archive = await sink.finish({
            manifests: manifestOrder(plan),
            index: Buffer.from(JSON.stringify(indexFor(toc), null, 2) + '\n'),
            files: files.map((f) => ({name: BUNDLE_PREFIX + f.path, bytes: f.bytes})),
            toc: Buffer.from(JSON.stringify(toc, null, 2) + '\n'),
          })
          return {archive, toc}
        },
        abort: () => sink.abort(),
      }
    },
  }
}
