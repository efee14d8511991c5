/**
 * A big blob downloaded over several connections at once when the network is the slower side,
 * read back in order as one stream. Over a long path each TCP connection is capped by its window
 * and round-trip time (often by a per-flow limit too), so a tool that fetches a layer on one
 * connection waits for its largest layer alone. Registries answer Range on blob GETs
 * (distribution, ggcr, the cloud registries), so the rest of a layer can come down in parts.
 *
 * The blob comes as Range GETs of WINDOW_BYTES one after another, each read with backpressure like
 * a plain GET: on loopback, where the upload is slower than the download, nothing else happens.
 * Only while the consumer waits for bytes that have not come, and has waited long enough to tell a
 * slow path from a moment's pause (SLOW_WAIT_MS), are parts after the last range asked for
 * fetched side by side. Parts fetched ahead are held in memory within a byte budget shared by
 * every download of a client, so memory stays bounded whatever the blob size. No connection is
 * ever cut short: an open-ended GET closed early would have had the registry send (and a proxy
 * buffer) far more than was read, which a first version did: 4.3 GiB served for a 2.1 GiB copy
 * through toxiproxy.
 */
import {Readable} from 'node:stream'

/**
 * Blobs at least this big are asked for as a Range (and may be split). Behind the benchmark's WAN
 * profile (25 ms each way, 25 MiB/s per connection), with 32 MiB, 16 MiB windows and 4 parts
 * within 16 MiB, the many blobs of 16-32 MiB each came on one capped connection and connections
 * sat idle: 16.9-19.0 s. More parts and a larger budget took 14.7-16.8 s side by side; these
 * values took 14.8-17.8 s over two side-by-side runs (see bench/README.md, --base-bin).
 */
export const RANGED_MIN_BYTES = 16 << 20
/** Bytes per range read in turn (the first one included). */
export const WINDOW_BYTES = 8 << 20
/** Bytes per part fetched ahead. */
export const PART_BYTES = 4 << 20
/** Parts fetched ahead of the one being read, per blob. */
export const PARTS_AHEAD = 8
/** Bytes all downloads of a client may hold in parts fetched ahead. */
export const AHEAD_BUDGET_BYTES = 32 << 20

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

/**
 * Parts are fetched ahead only once the consumer of a blob has waited SLOW_WAIT_MS for one read
 * (no byte came for that long) and SLOW_WAIT_SHARE of the time since the blob was asked for.
 * Behind the benchmark's WAN profile both hold by the first seam between windows (a round trip
 * with nothing to read), 0.4-1.6 s into a blob; WAN copies were no slower than with parts from
 * the first moment. On loopback the consumer has nothing to read now and then, for a moment (the
 * registry shares two cores with everything else): parts fetched on that gained nothing and cost
 * memory (183 parts, 732 MiB, in one benchmark copy, holding up to 32 MiB). A copy that outruns
 * a busy registry can still meet both now and then (an archive write, in about half the runs).
 */
const SLOW_WAIT_MS = 40
const SLOW_WAIT_SHARE = 0.5

/** Pause the connection being read when this much of it waits for the consumer. */
const HIGH_WATER = 256 << 10

/**
 * The blob of `size` bytes as one stream, given the body of its first range (`first`, bytes
 * 0..min(size, WINDOW_BYTES)-1) and a way to fetch other ranges.
 */
export function rangedStream(size: number, first: Readable, fetchRange: FetchRange, budget: ByteBudget): Readable {
  const segs: Segment[] = []
  let failed = false
  let wanted = false
  // how long the consumer has waited for bytes that had not come (see slow())
  const started = performance.now()
  let waitingSince = 0
  let waited = 0
  let longWait = false
  const slow = (): boolean => {
    const now = performance.now()
    if (waitingSince && now - waitingSince >= SLOW_WAIT_MS) longWait = true
    return longWait && waited + (waitingSince ? now - waitingSince : 0) >= (now - started) * SLOW_WAIT_SHARE
  }

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
      if (s.received + c.length > s.to - s.from) return fail(new Error(`range ${s.from}-${s.to - 1}: more bytes than asked for`))
      s.chunks.push(c)
      s.buffered += c.length
      s.received += c.length
      if (waitingSince && s === segs[0]) {
        const w = performance.now() - waitingSince
        if (w >= SLOW_WAIT_MS) longWait = true
        waited += w
        waitingSince = 0
      }
      // a window asked for ahead (no budget) holds no more than the one being read
      if ((s === segs[0] || s.reserved === 0) && s.buffered >= HIGH_WATER) body.pause()
      if (s === segs[0] && wanted) drain()
    })
    body.once('end', () => {
      if (s.done) return
      if (s.received !== s.to - s.from) return fail(new Error(`range ${s.from}-${s.to - 1}: connection ended after ${s.received} bytes`))
      s.done = true
      s.body = undefined
      // the next window is asked for as soon as this one is in, not once the consumer has read it,
      // so the consumer does not wait a round trip at each seam (behind the WAN profile, side by
      // side: 13.35-13.44 s against 13.87-14.47 s); it holds HIGH_WATER at most until it is read
      if (s === segs[segs.length - 1] && s.to < size && !failed) open(s.to, Math.min(size, s.to + WINDOW_BYTES), 0)
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
    while (start < size && segs.length <= PARTS_AHEAD) {
      const to = Math.min(size, start + PART_BYTES)
      if (!budget.tryTake(to - start)) break
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
        if (wanted) {
          if (!waitingSince) waitingSince = performance.now()
          if (slow()) split()
        }
        return
      }
      if (s.reserved) budget.give(s.reserved)
      s.reserved = 0
      segs.shift()
      if (s.to >= size) {
        out.push(null)
        return
      }
      // nothing asked for beyond this: the next window, on one connection, until the consumer waits
      if (segs.length === 0) open(s.to, Math.min(size, s.to + WINDOW_BYTES), 0)
      const h = segs[0]!
      if (h.body && h.buffered >= HIGH_WATER) h.body.pause()
    }
  }

  segs.push({from: 0, to: Math.min(size, WINDOW_BYTES), received: 0, chunks: [], buffered: 0, done: false, reserved: 0})
  attach(segs[0]!, first)
  return out
}
