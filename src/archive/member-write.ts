/**
 * Writing one blob's bytes into its place in the archive. A blob comes either as one stream,
 * hashed as it passes, or, when it is big and the source serves ranges, as a few ranges
 * downloaded side by side, each written straight to its own offset, and hashed by reading back
 * what was written, in order, as soon as it is there. One stream of a big layer is held to one
 * connection and one thread's per-chunk work (about 250 MiB/s here), and the largest layer of a
 * platform finished alone, seconds after every other blob.
 */
import {createHash} from 'node:crypto'
import {type Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {KpiError} from '../errors.js'
import {algorithmOf, DigestVerifier} from '../oci/index.js'
import type {PartWriter} from './parts.js'

/** bytes a writer gathers while its previous write is in flight: one pwritev each */
const WRITE_BATCH = 1 << 20
/** Blobs at least this big are fetched as ranges side by side, when the source can. */
export const SPLIT_MIN_BYTES = 64 << 20
/** at most this many ranges per blob, each at least half the size that splits */
export const SPLIT_RANGES = 4
/** bytes read back per step of the hash */
const HASH_READ = 1 << 20

/** Opens bytes from..to (inclusive) of the blob, length checked; undefined when the source cannot. */
export type OpenRange = (from: number, to: number) => Promise<Readable | undefined>

export interface Place {
  digest: string
  size: number
  /** offset of its data in the archive */
  offset: number
}

/**
 * A Writable that puts what it is given at `from`, `from + 1`, ... up to `limit` (exclusive),
 * one pwritev per batch; `onWritten(n)` once n more bytes are on file, in order.
 */
function writerAt(out: PartWriter, digest: string, from: number, limit: number, onWritten?: (n: number) => void): Writable {
  let at = from
  const put = (bufs: Buffer[], cb: (e?: Error | null) => void) => {
    const n = bufs.reduce((a, b) => a + b.length, 0)
    // the source checks lengths too; this keeps a member inside its place regardless
    if (at + n > limit) return cb(new KpiError('integrity', `blob ${digest}: more bytes than its place holds`))
    const here = at
    at += n
    out.writeAt(here, bufs).then(() => {
      onWritten?.(n)
      cb()
    }, cb)
  }
  return new Writable({
    highWaterMark: WRITE_BATCH,
    write: (chunk: Buffer, _enc, cb) => put([chunk], cb),
    writev: (chunks, cb) => put(chunks.map((c) => c.chunk as Buffer), cb),
  })
}

const mismatch = (digest: string, got: string): KpiError =>
  new KpiError('integrity', `blob ${digest}: content hashes to ${got}, not to its digest`, {hint: 'the source serves corrupt content for this digest; check or repair the source registry'})

/** One stream of the whole blob, hashed on its way to the file. */
export async function writeStream(out: PartWriter, place: Place, source: Readable, signal?: AbortSignal): Promise<void> {
  const {digest, size, offset} = place
  // the digest is checked before the member counts: a wrong blob never counts as written
  await pipeline(source, new DigestVerifier(digest, {size, label: `blob ${digest}`}), writerAt(out, digest, offset, offset + size), signal ? {signal} : {})
}

/**
 * The blob as ranges side by side; false (nothing written) when the source does not serve
 * ranges. The hash follows the bytes written from the start of the blob, reading them back from
 * the file (the page cache), so a wrong blob fails as a stream would, once it is all there.
 */
export async function writeRanges(out: PartWriter, place: Place, openRange: OpenRange, opts: {signal?: AbortSignal; minBytes?: number} = {}): Promise<boolean> {
  const {digest, size, offset} = place
  const signal = opts.signal
  const count = Math.max(1, Math.min(SPLIT_RANGES, Math.floor(size / ((opts.minBytes ?? SPLIT_MIN_BYTES) / 2))))
  const step = Math.ceil(size / count)
  const ranges = Array.from({length: count}, (_, i) => ({from: i * step, to: Math.min(size, (i + 1) * step), written: 0}))
  const first = await openRange(0, ranges[0]!.to - 1)
  if (!first) return false

  const stop = new AbortController()
  const onAbort = () => stop.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, {once: true})
  // the hash waits for bytes; each write that lands wakes it
  let wake: () => void = () => {}
  const landed = () => wake()
  let failed = false

  const copy = async (i: number): Promise<void> => {
    const r = ranges[i]!
    const body = i === 0 ? first : await openRange(r.from, r.to - 1)
    if (!body) throw new KpiError('failed', `blob ${digest}: the source stopped serving ranges`, {hint: 'retry'})
    await pipeline(body, writerAt(out, digest, offset + r.from, offset + r.to, (n) => {
      r.written += n
      landed()
    }), {signal: stop.signal})
    if (r.written !== r.to - r.from) throw new KpiError('integrity', `blob ${digest}: bytes ${r.from}-${r.to - 1} came ${r.written} bytes long`)
  }

  const hash = async (): Promise<string> => {
    const h = createHash(algorithmOf(digest))
    let done = 0
    while (done < size && !failed) {
      const r = ranges.find((x) => done >= x.from && done < x.to)!
      const ready = r.from + r.written - done
      if (ready <= 0) {
        await new Promise<void>((resolve) => { wake = resolve })
        continue
      }
      const bytes = await out.readAt(offset + done, Math.min(HASH_READ, ready))
      if (bytes.length === 0) throw new KpiError('internal', `blob ${digest}: the archive file gives no bytes at ${offset + done}`)
      h.update(bytes)
      done += bytes.length
    }
    return `${digest.slice(0, digest.indexOf(':'))}:${h.digest('hex')}`
  }

  let firstError: unknown
  try {
    const copies = ranges.map((_, i) => copy(i).catch((e: unknown) => {
      // the first failure stops the other ranges; theirs are only the consequence
      if (!failed) {
        failed = true
        firstError = e
        landed()
        stop.abort(e)
      }
    }))
    const hashed = hash()
    hashed.catch((e: unknown) => {
      if (!failed) {
        failed = true
        firstError = e
        stop.abort(e)
      }
    })
    await Promise.all(copies)
    const got = await hashed
    if (failed) throw firstError
    if (got !== digest) throw mismatch(digest, got)
    return true
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}
