/**
 * A big blob downloaded over several connections at once when the network is the slower side,
 * read back in order as one stream. Over a long path each TCP connection is capped by its window
 * and round-trip time (often by a per-flow limit too), so a tool that fetches a layer on one
 * connection waits for its largest layer alone. Registries answer Range on blob GETs
 * (distribution, ggcr, the cloud registries), so the rest of a layer can come down in parts.
 *
 * The blob starts as one open-ended Range GET, read with backpressure like a plain GET: on
 * loopback, where the upload is slower than the download, nothing else happens. Only while the
 * consumer waits for bytes that have not come is the rest split: parts after the current
 * connection's position are fetched side by side, and that connection is closed when it reaches
 * the first of them. Parts fetched ahead are held in memory within a byte budget shared by every
 * download of a client, so memory stays bounded whatever the blob size.
 */
import {Readable} from 'node:stream'

/** Blobs at least this big are asked for as a Range (and may be split). */
export const RANGED_MIN_BYTES = 32 << 20
/** Bytes per part fetched ahead. */
export const PART_BYTES = 4 << 20
/** Parts fetched ahead of the one being read, per blob. */
export const PARTS_AHEAD = 4
/** Bytes all downloads of a client may hold in parts fetched ahead. */
export const AHEAD_BUDGET_BYTES = 16 << 20

/** A counting semaphore of bytes. */
export class ByteBudget {
  private used = 0
  constructor(readonly limit: number) {}
  tryTake(n: number): boolean {
    if (this.used + n > this.limit) return false
    this.used += n
    return true
  }
  give(n: number): void {
    this.used -= n
  }
}

/** Bytes [from, to) of the blob, from one response. */
interface Segment {
  from: number
  to: number
  /** bytes received from its response so far */
  received: number
  chunks: Buffer[]
  buffered: number
  done: boolean
  body?: Readable
  /** budget bytes held (parts fetched ahead) */
  reserved: number
}

/** Opens bytes from..to (inclusive) of the blob: a 206 body of exactly that length, or throws. */
export type FetchRange = (from: number, to: number) => Promise<Readable>

/** Pause the connection being read when this much of it waits for the consumer. */
const HIGH_WATER = 256 << 10

/**
 * The blob of `size` bytes as one stream, given the body of an open-ended Range GET of it
 * (`first`, bytes 0..size-1) and a way to fetch other ranges.
 */
export function rangedStream(size: number, first: Readable, fetchRange: FetchRange, budget: ByteBudget): Readable {
  const segs: Segment[] = []
  let failed = false
  let wanted = false

  const out = new Readable({
    highWaterMark: HIGH_WATER,
    read() {
      wanted = true
      drain()
    },
    destroy(err, cb) {
      failed = true
      for (const s of segs) {
        s.body?.destroy()
        if (s.reserved) budget.give(s.reserved)
        s.reserved = 0
        s.chunks = []
      }
      cb(err)
    },
  })

  const fail = (e: unknown) => {
    if (!failed) out.destroy(e instanceof Error ? e : new Error(String(e)))
  }

  const attach = (s: Segment, body: Readable) => {
    if (failed || !segs.includes(s)) return void body.destroy()
    s.body = body
    body.on('data', (c: Buffer) => {
      const room = s.to - s.from - s.received
      if (c.length >= room) {
        // the segment is complete; a connection cut short by a split is closed here
        if (room > 0) s.chunks.push(c.length > room ? c.subarray(0, room) : c)
        s.buffered += room
        s.received += room
        s.done = true
        s.body = undefined
        body.removeAllListeners('data')
        body.destroy()
      } else {
        s.chunks.push(c)
        s.buffered += c.length
        s.received += c.length
        if (s === segs[0] && s.buffered >= HIGH_WATER) body.pause()
      }
      if (s === segs[0] && wanted) drain()
    })
    body.once('end', () => {
      if (s.done) return
      if (s.received !== s.to - s.from) return fail(new Error(`range ${s.from}-${s.to - 1}: connection ended after ${s.received} bytes`))
      s.done = true
      s.body = undefined
      if (s === segs[0]) drain()
    })
    body.on('error', (e) => {
      if (!s.done) fail(e)
    })
  }

  const open = (from: number, to: number, reserved: number): void => {
    const s: Segment = {from, to, received: 0, chunks: [], buffered: 0, done: false, reserved}
    segs.push(s)
    fetchRange(from, to - 1).then((body) => attach(s, body), fail)
  }

  // The consumer waits: fetch parts after what is already asked for, as the budget allows.
  const split = () => {
    const last = segs[segs.length - 1]
    if (!last) return
    let start = last.to
    if (last.to === size && !last.done) {
      // the last segment is a connection reading to the end: cut it a part past its position
      start = Math.ceil((last.from + last.received + PART_BYTES) / PART_BYTES) * PART_BYTES
      if (start >= size) return
    }
    while (start < size && segs.length <= PARTS_AHEAD) {
      const to = Math.min(size, start + PART_BYTES)
      if (!budget.tryTake(to - start)) break
      if (last.to === size && start > last.from + last.received && last.to > start) last.to = start
      open(start, to, to - start)
      start = to
    }
  }

  const drain = () => {
    while (!failed && segs.length) {
      const s = segs[0]!
      while (wanted && s.chunks.length) {
        const c = s.chunks.shift()!
        s.buffered -= c.length
        wanted = out.push(c)
      }
      if (s.body?.isPaused() && s.buffered < HIGH_WATER / 2) s.body.resume()
      if (!(s.done && s.chunks.length === 0)) {
        if (wanted) split()
        return
      }
      if (s.reserved) budget.give(s.reserved)
      s.reserved = 0
      segs.shift()
      if (s.to >= size) {
        out.push(null)
        return
      }
      // parts fetched ahead ran out: the rest on one connection again, until the consumer waits
      if (segs.length === 0) open(s.to, size, 0)
      const h = segs[0]!
      if (h.body && h.buffered >= HIGH_WATER) h.body.pause()
    }
  }

  segs.push({from: 0, to: size, received: 0, chunks: [], buffered: 0, done: false, reserved: 0})
  attach(segs[0]!, first)
  return out
}
