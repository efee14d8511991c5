/**
 * The archive as an ImageSink: blobs stream into the tar one member at a time (the next one's
 * download already open, waiting; no second copy on disk, memory flat), manifests are kept (they are small) and written at the end
 * with index.json, the bundle files and the table of contents. Output goes to `FILE.partial`
 * (or `FILE.partNNN.partial`), renamed only when complete. A member that fails half-way is cut
 * off again, so the partial file is always a run of whole, verified members that `resume`
 * continues from.
 */
import {createHash} from 'node:crypto'
import {Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {KpiError, isKpiError} from '../errors.js'
import {algorithmOf, DigestVerifier, type FetchedManifest} from '../oci/index.js'
import {limit} from '../pool.js'
import {noProgress, type OnEvent} from '../progress/events.js'
import type {ImageSink} from '../relocate/endpoints.js'
import {PartSet, PartWriter} from './parts.js'
import {scanTar} from './scan.js'
import {END_OF_ARCHIVE, fileHeader, padding} from './tar.js'
import {INDEX_MEMBER, LAYOUT_BYTES, LAYOUT_MEMBER, TOC_MEMBER, blobMember, memberDigest} from './toc.js'

export interface ArchiveSinkOptions {
  /** split into parts of this many bytes: FILE.part001, FILE.part002, ... */
  splitSize?: number
  /** continue from FILE.partial left by an interrupted run */
  resume?: boolean
  /** blobs the archive leaves out (a delta's base has them): hasBlob answers true for them */
  exclude?: ReadonlySet<string>
  /**
   * the blobs in the order this run will write them (blobOrder of the ordered plan); a resumed
   * partial file is kept only as far as it follows this order, so the result is byte-identical
   * to an uninterrupted run
   */
  order?: readonly string[]
  onEvent?: OnEvent
  /** stop writing: the current member is cut off, FILE.partial stays for --resume */
  signal?: AbortSignal
}

export interface ArchiveContent {
  /** manifest digests in the order to write them (each given to putManifest before) */
  manifests: readonly string[]
  index: Buffer
  /** kpi/bundle/... members, in order */
  files: ReadonlyArray<{name: string; bytes: Buffer}>
  toc: Buffer
}

export interface ArchiveInfo {
  /** the archive's files: one, or the parts in order */
  files: string[]
  /** total size in bytes */
  bytes: number
  blobs: number
  manifests: number
  /** what an interrupted run had written that this one kept */
  resumed: {blobs: number; bytes: number}
}

export interface ArchiveSink extends ImageSink {
  readonly resumed: {blobs: number; bytes: number}
  /** blobs in the archive so far: digest -> size */
  readonly written: ReadonlyMap<string, number>
  /** a small blob the archive holds, read back (e.g. an image config, for its platform) */
  readBlob(digest: string, maxBytes: number): Promise<Buffer | undefined>
  /** writes manifests, index.json, bundle files and the toc, then renames the partial files */
  finish(content: ArchiveContent): Promise<ArchiveInfo>
  /** closes without finishing; the partial files stay for --resume */
  abort(): Promise<void>
}

const aborted = () => new KpiError('failed', 'archive writing was interrupted', {hint: 'run it again with --resume to continue from what was written'})

export async function createArchiveSink(file: string, opts: ArchiveSinkOptions = {}): Promise<ArchiveSink> {
  if (opts.splitSize !== undefined && (!Number.isSafeInteger(opts.splitSize) || opts.splitSize < 1)) {
    throw new KpiError('usage', `split size ${opts.splitSize} is not a positive number of bytes`)
  }
  const onEvent = opts.onEvent ?? noProgress
  const exclude = opts.exclude ?? new Set<string>()
  // digest -> {offset of data, size}
  const written = new Map<string, {offset: number; size: number}>()
  const sizes = new Map<string, number>()
  const manifests = new Map<string, FetchedManifest>()
  const resumed = {blobs: 0, bytes: 0}

  const leftovers = await PartWriter.leftovers(file, opts.splitSize)
  let keep = 0
  if (opts.resume && leftovers.length > 0) {
    keep = await resumePoint(leftovers, opts.order, written)
    for (const [d, w] of written) {
      sizes.set(d, w.size)
      resumed.blobs++
      resumed.bytes += w.size
    }
    onEvent({type: 'info', message: `resuming ${file}: kept ${resumed.blobs} blobs (${resumed.bytes} bytes) of the interrupted run`})
  } else if (opts.resume) {
    onEvent({type: 'info', message: `nothing to resume for ${file}: starting anew`})
  }
  const out = await PartWriter.create(file, {splitSize: opts.splitSize, keep, leftovers})
  // the tar is one sequence of bytes: one member at a time
  const serial = limit(1)
  let closed = false

  const writeMember = async (name: string, bytes: Buffer) => {
    await out.write(fileHeader(name, bytes.length))
    await out.write(bytes)
    await out.write(Buffer.alloc(padding(bytes.length)))
  }
  if (keep === 0) await writeMember(LAYOUT_MEMBER, LAYOUT_BYTES)

  const sink: ArchiveSink = {
    name: `archive ${file}`,
    concurrency: 2,
    resumed,
    written: sizes,
    hasBlob: async (_repo, digest) => written.has(digest) || exclude.has(digest),
    hasManifest: async (_repo, digest) => manifests.has(digest),
    putBlob: (_repo, digest, size, open) => {
      // The next blob's download starts while the one before it is written (concurrency 2, one
      // writer): its body waits, paused by backpressure, so the tar never waits for a request.
      // Its turn is taken now, in call order, so the tar's order does not depend on which
      // registry answer comes first.
      const opening = written.has(digest) || closed ? undefined : open()
      // an error before its turn is reported by the pipeline below
      opening?.then((s) => s.on('error', () => {}), () => {})
      return serial(async () => {
        const early = opening ? await opening : undefined
        if (written.has(digest)) return void early?.destroy()
        if (closed) {
          early?.destroy()
          throw new KpiError('internal', `archive ${file} is already closed`)
        }
        if (opts.signal?.aborted) {
          early?.destroy()
          throw aborted()
        }
        algorithmOf(digest)
        const start = out.offset
        try {
          await out.write(fileHeader(blobMember(digest), size))
          const dataOffset = out.offset
          const target = new Writable({
            highWaterMark: 1 << 20,
            write(chunk: Buffer, _enc, cb) {
              out.write(chunk).then(() => cb(), cb)
            },
          })
          // the digest is checked before the member counts: a wrong blob is cut off again
          await pipeline(early ?? await open(), new DigestVerifier(digest, {size, label: `blob ${digest}`}), target, opts.signal ? {signal: opts.signal} : {})
          await out.write(Buffer.alloc(padding(size)))
          written.set(digest, {offset: dataOffset, size})
          sizes.set(digest, size)
        } catch (e) {
          early?.destroy()
          await out.truncate(start)
          if (opts.signal?.aborted) throw aborted()
          throw isKpiError(e) ? e : new KpiError('failed', `writing blob ${digest} to ${file}: ${(e as Error).message}`, {cause: e})
        }
      })
    },
    putManifest: async (_repo, m) => {
      if (!manifests.has(m.digest)) manifests.set(m.digest, m)
    },
    readBlob: (digest, maxBytes) =>
      serial(async () => {
        const w = written.get(digest)
        if (!w || w.size > maxBytes) return undefined
        const ps = await PartSet.open(await partialFiles(out))
        try {
          return await ps.read(w.offset, w.size)
        } finally {
          await ps.close()
        }
      }),
    finish: (content) =>
      serial(async () => {
        if (closed) throw new KpiError('internal', `archive ${file} is already closed`)
        let count = 0
        for (const d of content.manifests) {
          const m = manifests.get(d)
          if (!m) throw new KpiError('internal', `manifest ${d} was never given to the archive`)
          count++
          if (written.has(d)) continue // the same bytes are already a blob member
          await writeMember(blobMember(d), m.bytes)
        }
        await writeMember(INDEX_MEMBER, content.index)
        for (const f of content.files) await writeMember(f.name, f.bytes)
        await writeMember(TOC_MEMBER, content.toc)
        await out.write(END_OF_ARCHIVE)
        closed = true
        const bytes = out.offset
        const files = await out.complete()
        return {files, bytes, blobs: written.size, manifests: count, resumed}
      }),
    abort: async () => {
      if (closed) return
      closed = true
      await out.closeAll()
    },
  }
  return sink
}

async function partialFiles(out: PartWriter): Promise<string[]> {
  const files: string[] = []
  const last = out.splitSize ? Math.max(1, Math.ceil(out.offset / out.splitSize)) : 1
  for (let n = 1; n <= last; n++) files.push(out.partialPath(n))
  return files
}

/**
 * How much of an interrupted run's output to keep: `oci-layout`, then blob members whose content
 * hashes to their name, in the run's blob order. Fills `written` with what is kept.
 */
async function resumePoint(files: string[], order: readonly string[] | undefined, written: Map<string, {offset: number; size: number}>): Promise<number> {
  const ps = await PartSet.open(files)
  try {
    const scan = await scanTar(ps, files[0]!, {lenient: true})
    const [first, ...rest] = scan.members
    if (!first || first.name !== LAYOUT_MEMBER || !(await ps.read(first.offset, first.size)).equals(LAYOUT_BYTES)) return 0
    let keep = first.end
    let i = 0
    for (const m of rest) {
      const digest = memberDigest(m.name)
      if (!digest) break
      if (order && order[i] !== digest) break
      const h = createHash(algorithmOf(digest))
      for await (const chunk of ps.stream(m.offset, m.size)) h.update(chunk as Buffer)
      if (`${digest.slice(0, digest.indexOf(':'))}:${h.digest('hex')}` !== digest) break
      written.set(digest, {offset: m.offset, size: m.size})
      keep = m.end
      i++
    }
    return keep
  } finally {
    await ps.close()
  }
}
