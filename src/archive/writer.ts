/**
 * The archive as an ImageSink. Every blob's place in the tar is computed up front from the
 * planned order and sizes (a member is its header, its bytes and padding to 512), so blobs
 * download side by side (WRITERS at a time, more while the source is slow), the largest first,
 * each streamed straight to its own place as one sequence from header to padding (parts.ts:
 * around the page cache where the file system allows; no second copy on disk, memory bounded by
 * the writers). Manifests are kept (they are small) and written at the end with index.json, the
 * bundle files and the table of contents. Output goes to `FILE.partial` (or `FILE.partNNN.partial`),
 * renamed only when complete, after a check that every planned blob is in. The bytes do not depend on the order in which downloads finish: a resumed run
 * (`resume`) keeps every member of the partial files whose header and content are exactly
 * what belongs at its place, writes the others, and gives the bytes of an uninterrupted run.
 */
import {type Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setTimeout as sleep} from 'node:timers/promises'
import {KpiError, isKpiError} from '../errors.js'
import {algorithmOf, backoffMs, defaultRetryPolicy, digestCheck, doneWith, isConnectionReset, isSilence, type FetchedManifest} from '../oci/index.js'
import {noProgress, type OnEvent} from '../progress/events.js'
import type {ImageSink} from '../relocate/endpoints.js'
import {uploadPool} from '../relocate/upload-pool.js'
import {PartWriter} from './parts.js'
import {END_OF_ARCHIVE, fileHeader, paddedSize, paddingBytes} from './tar.js'
import {INDEX_MEMBER, LAYOUT_BYTES, LAYOUT_MEMBER, TOC_MEMBER, blobMember} from './toc.js'

/**
 * Layers downloaded and written at once to begin with. On loopback the archive write is
 * CPU-bound (kpi's one thread hashes every byte, the source registry has the other core), and
 * each writer more costs a little: the benchmark's archive write took 3.23-3.43 s with 4,
 * 3.49-3.61 with 6 and 3.53-3.70 with 8, in alternation.
 */
export const WRITERS = 4
/**
 * Layers at once at most, unless `concurrency` says otherwise (relocate's --concurrency default).
 * Behind the benchmark's WAN profile (25 ms each way, 25 MiB/s per connection) more writers means
 * more connections: 6 writers took 10.7-11.2 s, 10 took 9.6-9.8.
 */
export const MAX_WRITERS = 8
/** How often the writer looks at its pace. */
const PACE_MS = 250
/**
 * Every writer busy, layers waiting, and less than this per writer over PACE_MS: the source is the
 * slow side (a long path, a capped connection). On loopback each of 4 writers gets 100-200 MiB/s
 * and the pace never says so; behind the WAN profile one connection brings at most 25.
 */
const SLOW_WRITER_BYTES_PER_S = 32 << 20

/**
 * How many writers to run, from what the writer saw over `ms`: where the source is the slow side,
 * all that `most` allows, at once. One more per look took the fifth to eighth writers 0.9 to 1.45 s
 * into the benchmark's WAN archive write (the first look comes once the plan is read, 0.75 s in),
 * while the first blobs came at a quarter of what the path gives. All at once, side by side (4 and
 * 3 rounds, alternating): 7.52-8.17 s against 7.78-8.34 from the plain-HTTP source, 8.25-8.34
 * against 8.50-8.75 from the HTTPS one, peak RSS 94.0-96.6 MiB there against 94.6-94.8.
 */
export function writersWanted(o: {running: number; waiting: number; width: number; most: number; bytes: number; ms: number}): number {
  if (o.running < o.width || o.waiting === 0) return o.width
  return o.bytes / o.width / (o.ms / 1000) < SLOW_WRITER_BYTES_PER_S ? Math.max(o.width, o.most) : o.width
}
/**
 * Bytes a writer gathers while its previous batch is being written. Around the page cache a
 * batch is only copied into a slab (parts.ts), so a small one costs nothing in time and keeps
 * the peak RSS of the benchmark platform's archive under 100 MiB (1 MiB: 101-102 MiB).
 */
const WRITE_BATCH = 256 << 10

export interface ArchiveSinkOptions {
  /** split into parts of this many bytes: FILE.part001, FILE.part002, ... */
  splitSize?: number
  /** continue from FILE.partial left by an interrupted run */
  resume?: boolean
  /** false: write through the page cache even where O_DIRECT works (parts.ts) */
  direct?: boolean
  /** layers written at once at most (default MAX_WRITERS); WRITERS to begin with */
  concurrency?: number
  /** blobs the archive leaves out (a delta's base has them): hasBlob answers true for them */
  exclude?: ReadonlySet<string>
  /**
   * the blobs this run writes, in archive order (blobOrder of the ordered plan, less the
   * excluded ones): each gets its place from this list, so the same list gives the same bytes
   */
  order: ReadonlyArray<{digest: string; size: number}>
  onEvent?: OnEvent
  /** stop writing: members being written are left incomplete, FILE.partial stays for --resume */
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
  /** the writes went around the page cache (O_DIRECT) */
  direct: boolean
  /** the most layers written at once: more than WRITERS where the source was slow */
  writers: number
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

/** What to do when a write failed: every blob written whole is kept for --resume. */
function writeHint(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code
  const cause = code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG' ? 'free space' : 'fix what the error names'
  return `${cause}, then run again with --resume: the blobs written are kept`
}

const aborted = () => new KpiError('failed', 'archive writing was interrupted', {hint: 'run it again with --resume to continue from what was written'})

/** A blob's place in the tar. */
interface Slot {
  digest: string
  size: number
  /** offset of its header */
  start: number
  headerBytes: number
  /** offset of its data */
  offset: number
  /** offset after its padding */
  end: number
}

const LAYOUT_HEADER = fileHeader(LAYOUT_MEMBER, LAYOUT_BYTES.length)
const LAYOUT_MEMBER_BYTES = Buffer.concat([LAYOUT_HEADER, LAYOUT_BYTES, paddingBytes(LAYOUT_BYTES.length)])

const memberBytes = (name: string, bytes: Buffer): Buffer[] => [fileHeader(name, bytes.length), bytes, paddingBytes(bytes.length)]

export async function createArchiveSink(file: string, opts: ArchiveSinkOptions): Promise<ArchiveSink> {
  if (opts.splitSize !== undefined && (!Number.isSafeInteger(opts.splitSize) || opts.splitSize < 1)) {
    throw new KpiError('usage', `split size ${opts.splitSize} is not a positive number of bytes`)
  }
  const onEvent = opts.onEvent ?? noProgress
  const exclude = opts.exclude ?? new Set<string>()
  // digest -> where its data is
  const written = new Map<string, {offset: number; size: number}>()
  const sizes = new Map<string, number>()
  const manifests = new Map<string, FetchedManifest>()
  const resumed = {blobs: 0, bytes: 0}

  // the layout: oci-layout, then every planned blob at its place; blobs nobody planned go after
  const slots = new Map<string, Slot>()
  let end = LAYOUT_MEMBER_BYTES.length
  const place = (digest: string, size: number): Slot => {
    algorithmOf(digest)
    const headerBytes = fileHeader(blobMember(digest), size).length
    const slot = {digest, size, start: end, headerBytes, offset: end + headerBytes, end: end + headerBytes + paddedSize(size)}
    slots.set(digest, slot)
    end = slot.end
    return slot
  }
  for (const b of opts.order) if (!slots.has(b.digest) && !exclude.has(b.digest)) place(b.digest, b.size)

  const out = await PartWriter.open(file, {splitSize: opts.splitSize, resume: opts.resume, direct: opts.direct})
  if (out.existing) {
    await keepWhatIsWhole(out, slots, written)
    for (const [d, w] of written) {
      sizes.set(d, w.size)
      resumed.blobs++
      resumed.bytes += w.size
    }
    onEvent({type: 'info', message: `resuming ${file}: kept ${resumed.blobs} blobs (${resumed.bytes} bytes) of the interrupted run`})
  } else if (opts.resume) {
    onEvent({type: 'info', message: `nothing to resume for ${file}: starting anew`})
  }
  const layout = out.sequence(0)
  await layout.write([LAYOUT_MEMBER_BYTES])
  await layout.end()
  let closed = false

  /**
   * A blob's member, written again from a fresh download when the source's connection drops
   * mid-blob (as an upload to a registry is restarted, blobs.ts): a reset in the middle of a big
   * layer must not end the whole archive. A source that went silent already waited out its
   * timeout (and was asked again) inside the client: it is tried once more at most.
   */
  const writeBlob = async (slot: Slot, open: () => Promise<Readable>): Promise<void> => {
    let stalled = 0
    for (let attempt = 0; ; attempt++) {
      try {
        return await writeMember(slot, open)
      } catch (e) {
        // a write to disk that failed is not retried: only a source whose connection dropped
        if (attempt >= defaultRetryPolicy.retries || opts.signal?.aborted || closed || !isConnectionReset(e) || (isSilence(e) && stalled++ > 0)) throw e
        await sleep(backoffMs(attempt, defaultRetryPolicy))
      }
    }
  }

  const writeMember = async (slot: Slot, open: () => Promise<Readable>): Promise<void> => {
    if (closed) throw new KpiError('internal', `archive ${file} is already closed`)
    if (opts.signal?.aborted) throw aborted()
    const {digest, size} = slot
    let source: Readable | undefined
    // the member from its header to its padding, written in order (parts.ts: around the page
    // cache where the file system allows)
    const member = out.sequence(slot.start)
    try {
      source = await open()
      // the header may wait for a free slab, and the source can fail meanwhile (a reset, a short
      // body): its error stays on the stream (errored) for pipeline() below, not uncaught
      source.on('error', () => {})
      await member.write([fileHeader(blobMember(digest), size)])
      // checked as it is written (no stream layer of its own): the digest is checked before the
      // member counts, so a wrong blob never counts as written
      const check = digestCheck(digest, {size, label: `blob ${digest}`})
      const put = (bufs: Buffer[], cb: (e?: Error | null) => void) => {
        for (const b of bufs) {
          // refuses more bytes than the size, so a member stays inside its place
          const wrong = check.update(b)
          if (wrong) return cb(wrong)
          paced += b.length
        }
        member.write(bufs).then(() => {
          // written (or copied to be written) and hashed: buffers read from a registry can be read into again
          for (const b of bufs) doneWith(b)
          cb()
        }, cb)
      }
      const target = new Writable({
        highWaterMark: WRITE_BATCH,
        write: (chunk: Buffer, _enc, cb) => put([chunk], cb),
        writev: (chunks, cb) => put(chunks.map((c) => c.chunk as Buffer), cb),
        final: (cb) => cb(check.end()),
      })
      await pipeline(source, target, opts.signal ? {signal: opts.signal} : {})
      // the padding to 512, and every write of the member done
      await member.end()
      written.set(digest, {offset: slot.offset, size})
      sizes.set(digest, size)
    } catch (e) {
      source?.destroy()
      // written again at this place on a retry: the writes of this attempt must land first
      await member.abandon()
      if (opts.signal?.aborted) throw aborted()
      throw isKpiError(e) ? e : new KpiError('failed', `writing blob ${digest} to ${file}: ${(e as Error).message}`, {cause: e, hint: writeHint(e)})
    }
  }

  // WRITERS layers at once, the largest waiting first (upload-pool.ts), `most` once all are busy
  // and the source gives each less than SLOW_WRITER_BYTES_PER_S (writersWanted); the executor
  // hands over every blob within a few ticks: all are in before any starts
  const most = Math.max(1, opts.concurrency ?? MAX_WRITERS)
  const pool = uploadPool(most, {gather: true, start: Math.min(WRITERS, most)})
  let paced = 0
  let pacer: NodeJS.Timeout | undefined
  const pace = () => {
    const {running, waiting, width} = pool.layers
    const bytes = paced
    paced = 0
    pool.widenTo(writersWanted({running, waiting, width, most, bytes, ms: PACE_MS}))
  }
  const stopPacing = () => {
    if (pacer) clearInterval(pacer)
    pacer = undefined
  }
  const inFlight = new Map<string, Promise<void>>()
  const schedule = (slot: Slot, open: () => Promise<Readable>): Promise<void> => {
    pacer ??= setInterval(pace, PACE_MS).unref()
    return pool(slot.size, () => writeBlob(slot, open))
  }

  /** manifests, index.json, bundle files and the toc after the blobs, then the rename */
  const writeTail = async (content: ArchiveContent): Promise<ArchiveInfo> => {
    // a completed archive has no hole: every planned blob is in
    for (const d of slots.keys()) if (!written.has(d)) throw new KpiError('internal', `blob ${d} was never written to ${file}`)
    const bufs: Buffer[] = []
    let count = 0
    for (const d of content.manifests) {
      const m = manifests.get(d)
      if (!m) throw new KpiError('internal', `manifest ${d} was never given to the archive`)
      count++
      if (written.has(d)) continue // the same bytes are already a blob member
      bufs.push(...memberBytes(blobMember(d), m.bytes))
    }
    bufs.push(...memberBytes(INDEX_MEMBER, content.index))
    for (const f of content.files) bufs.push(...memberBytes(f.name, f.bytes))
    bufs.push(...memberBytes(TOC_MEMBER, content.toc), END_OF_ARCHIVE)
    const tail = out.sequence(end)
    try {
      await tail.write(bufs)
      await tail.end()
    } catch (e) {
      void tail.abandon()
      throw new KpiError('failed', `writing the manifests, index.json, bundle files and ${TOC_MEMBER} to ${file}: ${(e as Error).message}`, {cause: e, hint: writeHint(e)})
    }
    const bytes = end + bufs.reduce((a, b) => a + b.length, 0)
    const direct = out.isDirect
    const files = await out.complete(bytes)
    return {files, bytes, blobs: written.size, manifests: count, resumed, direct, writers: pool.layers.width}
  }

  const sink: ArchiveSink = {
    name: `archive ${file}`,
    // every blob is taken at once; the sink runs WRITERS to `most` of them at a time
    concurrency: Math.max(most, slots.size),
    // every blob is hashed here as it is written: the source need not hash it too
    verifiesDigests: true,
    resumed,
    written: sizes,
    hasBlob: async (_repo, digest) => written.has(digest) || exclude.has(digest),
    hasManifest: async (_repo, digest) => manifests.has(digest),
    putBlob: (_repo, digest, size, open) => {
      if (written.has(digest)) return Promise.resolve()
      const running = inFlight.get(digest)
      if (running) return running
      const slot = slots.get(digest) ?? place(digest, size)
      if (slot.size !== size) return Promise.reject(new KpiError('integrity', `blob ${digest} is ${size} bytes here and ${slot.size} bytes in the plan`))
      const p = schedule(slot, open).finally(() => inFlight.delete(digest))
      inFlight.set(digest, p)
      return p
    },
    putManifest: async (_repo, m) => {
      if (!manifests.has(m.digest)) manifests.set(m.digest, m)
    },
    readBlob: async (digest, maxBytes) => {
      const w = written.get(digest)
      if (!w || w.size > maxBytes) return undefined
      return out.readAt(w.offset, w.size)
    },
    finish: async (content) => {
      if (closed) throw new KpiError('internal', `archive ${file} is already closed`)
      await Promise.allSettled([...inFlight.values()])
      stopPacing()
      closed = true
      try {
        return await writeTail(content)
      } catch (e) {
        // closed here, since abort() finds the sink closed: the partial files stay for --resume
        await out.closeAll()
        throw isKpiError(e) ? e : new KpiError('failed', `finishing archive ${file}: ${(e as Error).message}`, {cause: e, hint: writeHint(e)})
      }
    },
    abort: async () => {
      if (closed) return
      closed = true
      stopPacing()
      await Promise.allSettled([...inFlight.values()])
      await out.closeAll()
    },
  }
  return sink
}

/**
 * What an interrupted run left that this one keeps: `oci-layout` in place, then every member
 * whose header is exactly the one its place needs, whose content hashes to its name and whose
 * padding is zeros. Fills
 * `written`; anything else is written again.
 */
async function keepWhatIsWhole(out: PartWriter, slots: ReadonlyMap<string, Slot>, written: Map<string, {offset: number; size: number}>): Promise<void> {
  if (!(await out.readAt(0, LAYOUT_MEMBER_BYTES.length)).equals(LAYOUT_MEMBER_BYTES)) return
  const CHUNK = 1 << 20
  for (const slot of slots.values()) {
    const header = await out.readAt(slot.start, slot.headerBytes)
    if (!header.equals(fileHeader(blobMember(slot.digest), slot.size))) continue
    const check = digestCheck(slot.digest, {size: slot.size})
    let got = 0
    for (let at = slot.offset; got < slot.size;) {
      const chunk = await out.readAt(at, Math.min(CHUNK, slot.size - got))
      if (chunk.length === 0) break
      check.update(chunk)
      got += chunk.length
      at += chunk.length
    }
    if (check.end()) continue
    // its padding too, which no digest covers: the resumed archive is byte for byte an uninterrupted run's
    const pad = slot.end - slot.offset - slot.size
    const padding = await out.readAt(slot.offset + slot.size, pad)
    if (padding.length === pad && padding.every((b) => b === 0)) written.set(slot.digest, {offset: slot.offset, size: slot.size})
  }
}
