/**
 * A big blob downloaded over several connections at once when the network is the slower side,
 * read back in order as one stream. Over a long path each TCP connection is capped by its window
 * and round-trip time (often by a per-flow limit too), so a tool that fetches a layer on one
 * connection waits for its largest layer alone. Registries answer Range on blob GETs
 * (distribution, ggcr, the cloud registries), so the rest of a layer can come down in parts.
 *
 * The blob comes as Range GETs of WINDOW_BYTES one after another, each read with backpressure like
 * a plain GET, except that a window which came faster than one connection over a long path brings
 * (FAST_WINDOW_BYTES_PER_S) is followed by the rest of the blob in one GET. Over a short path
 * (NEAR_ANSWER_MS: loopback, a LAN) none of this happens: a big blob is one GET.
 * Only while the consumer waits for bytes that have not come, and has waited long enough to tell a
 * slow path from a moment's pause (SLOW_WAIT_MS), are parts after the last range asked for
 * fetched side by side. Parts fetched ahead wait for their turn in a temporary file (part-spool.ts)
 * whose size, shared by every download of a client, bounds how many are in flight; memory holds
 * no more than HIGH_WATER per connection, whatever the blob size. No connection is
 * ever cut short: an open-ended GET closed early would have had the registry send (and a proxy
 * buffer) far more than was read, which a first version did: 4.3 GiB served for a 2.1 GiB copy
 * through toxiproxy.
 */
import {Readable} from 'node:stream'
import {doneWith, handOut, recycle, takeBuffer} from './buffer-pool.js'
import {PartSpool} from './part-spool.js'

/**
 * Blobs at least this big are asked for as a Range (and may be split). Behind the benchmark's WAN
 * profile (25 ms each way, 25 MiB/s per connection), with 32 MiB, 16 MiB windows and 4 parts
 * within 16 MiB, the many blobs of 16-32 MiB each came on one capped connection and connections
 * sat idle: 16.9-19.0 s. More parts and a larger budget took 14.7-16.8 s side by side; these
 * values took 14.8-17.8 s over two side-by-side runs (see bench/README.md, --base-bin).
 */
export const RANGED_MIN_BYTES = 16 << 20
/**
 * An origin that answered any request within this many milliseconds (wire.ts's
 * quickestAnswerMs: a round trip and the server's quickest reply) is near, and its big blobs come
 * in one GET: no windows, no parts. One TCP connection over such a path carries its window (6 MiB
 * at most by Linux's defaults) every 10 ms, 600 MiB/s, more than any copy here moves; a consumer
 * that waits there waits on a busy server or host, and more connections only add to its load. On
 * a busy 2-core host, loopback archive writes fetched parts ahead after a stall in the middle of a
 * blob (two of three in one benchmark run, 399 and 361 source requests against 231, 4.97 and 4.64
 * s against 4.20). Behind the benchmark's WAN profile (25 ms each way) every answer takes 50 ms
 * or more. A per-connection cap on a short path (a bandwidth limit on a LAN) is not split.
 */
export const NEAR_ANSWER_MS = 10
/** Bytes per range read in turn (the first one included). */
export const WINDOW_BYTES = 8 << 20
/**
 * A window that came at this many bytes a second or more is followed by the rest of the blob.
 * Behind the benchmark's WAN profile one connection brings 16-21 MiB/s (at most 25); on loopback a
 * window comes at the pace of its consumer, 40-100 MiB/s with six copies side by side. A window
 * that is slower keeps the next at WINDOW_BYTES, where parts can still be fetched after it.
 * Windows used to double instead (8, 16, 32 MiB, ...): on loopback that cost the registry a
 * request per doubling and, in two archive writes of three, parts fetched ahead through the spool
 * after a moment's wait at a seam (14-33 parts, 58-138 MiB); the rest in one GET took the
 * benchmark's archive write from 61-77 source requests for big blobs to 26, the source registry
 * from 1.68-1.94 CPU-s to 1.63-1.70 and kpi's peak RSS from 97 MiB to 92 (3.42-3.54 s against
 * 3.51-3.73, in alternation).
 */
export const FAST_WINDOW_BYTES_PER_S = 32 << 20
/** Bytes per part fetched ahead. */
export const PART_BYTES = 4 << 20
/** Parts fetched ahead of the one being read, per blob. */
export const PARTS_AHEAD = 8
/**
 * Bytes all downloads of a client may have in parts fetched ahead (their spool file's size: the
 * page cache's, not the process's memory). Behind the benchmark's WAN profile, side by side in 3
 * rounds: the archive write took 8.47-8.70 s with 64 MiB against 9.98-10.15 with 32 (7.13-7.82
 * with 128), peak RSS 88-89 MiB against 85-86; registry to registry within the noise. More is not
 * better from an HTTPS source: each part in flight holds a connection's read buffers and TLS's,
 * and the main thread, decrypting and hashing every byte, is the limit there. With 128 MiB the
 * HTTPS WAN copy peaked at 95 MiB, and the HTTPS WAN archive write took 9.06-9.30 s against 8.68
 * at a peak of 101.6-103.4 MiB against 93-94.
 */
export const AHEAD_BUDGET_BYTES = 64 << 20

/** The spool of a client's parts fetched ahead. */
export const partSpool = (limit = AHEAD_BUDGET_BYTES, dir?: string): PartSpool => new PartSpool(limit, PART_BYTES, dir)
export type {PartSpool}

/** Bytes [from, to) of the blob, from one response. */
interface Segment {
  from: number
  to: number
  /** bytes received from its response so far */
  received: number
  /** a window's bytes not yet read by the consumer (a part's wait in its slot instead) */
  chunks: Buffer[]
  buffered: number
  done: boolean
  body?: Readable
  /** when it was asked for */
  askedAt: number
  /** a part fetched ahead: its slot in the spool */
  slot?: number
  /** a part: its writes to the slot, one after another; bytes in the slot; bytes read back */
  writes: Promise<void>
  writing: number
  spooled: number
  readBack: number
  reading: boolean
}

/** Opens bytes from..to (inclusive) of the blob: a 206 body of exactly that length, or throws. */
export type FetchRange = (from: number, to: number) => Promise<Readable>

/**
 * Parts are fetched ahead only once the consumer of a blob has waited SLOW_WAIT_MS for one read
 * (no byte came for that long) and SLOW_WAIT_SHARE of the time since the blob's first byte came.
 * The wait for that first byte does not count: it is the registry's time to answer. Behind the
 * benchmark's WAN profile both hold by the first seam between windows (a round trip with nothing
 * to read), 0.4-1.6 s into a blob; WAN copies were no slower than with parts from the first
 * moment (and the WAN export no slower without the first byte's wait: 7.63-8.77 s against
 * 7.85-8.75, 5 rounds beside the build before). On loopback the consumer has nothing to read now
 * and then, for a moment (the registry shares two cores with everything else): parts fetched on
 * that gained nothing and cost memory (183 parts, 732 MiB, in one benchmark copy, holding up to
 * 32 MiB). A copy that outruns a busy registry can still meet both now and then (a registry copy,
 * in some runs).
 */
const SLOW_WAIT_MS = 40
const SLOW_WAIT_SHARE = 0.5

/**
 * Pause the connection being read when this much of it waits for the consumer (or for the
 * spool). Held per connection: see wire.ts's SLAB_BYTES for what 128 KiB rather than 256 saves.
 */
const HIGH_WATER = 128 << 10
/** Bytes read back from a part's slot at a time. */
const READ_BACK = 128 << 10

/**
 * The blob of `size` bytes as one stream, given the body of its first range (`first`, bytes
 * 0..min(size, WINDOW_BYTES)-1) and a way to fetch other ranges.
 */
export function rangedStream(size: number, first: Readable, fetchRange: FetchRange, spool: PartSpool): Readable {
  const segs: Segment[] = []
  let failed = false
  let wanted = false
  // how long the consumer has waited for bytes that had not come (see slow())
  let started = performance.now()
  let flowing = false
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
        free(s)
        s.chunks = []
      }
      cb(err)
    },
  })

  /** A part's slot goes back once no write to it is in flight: a later part may be written there. */
  const free = (s: Segment) => {
    const slot = s.slot
    if (slot === undefined) return
    s.slot = undefined
    void s.writes.catch(() => undefined).then(() => spool.give(slot))
  }

  /** Bytes of the first segment came: what the consumer waited for them counts (see slow()). */
  const arrived = () => {
    if (!flowing) {
      // The wait for the blob's first byte is the registry's time to answer, not the path's pace:
      // on loopback a registry busy with a plan's manifests took 45 ms to answer the largest
      // layer, which then came as 4 MiB parts through the spool (that archive write 4.09 s
      // against 3.24-3.72). Behind a slow path the consumer waits at the first seam between windows.
      flowing = true
      started = performance.now()
      waitingSince = 0
      waited = 0
      longWait = false
      return
    }
    if (!waitingSince) return
    const w = performance.now() - waitingSince
    if (w >= SLOW_WAIT_MS) longWait = true
    waited += w
    waitingSince = 0
  }

  const fail = (e: unknown) => {
    if (!failed) out.destroy(e instanceof Error ? e : new Error(String(e)))
  }

  const attach = (s: Segment, body: Readable) => {
    // a part that came after the stream failed: destroyed unread, an undici body errors (aborted)
    if (failed || !segs.includes(s)) return void body.on('error', () => {}).destroy()
    s.body = body
    body.on('data', (c: Buffer) => {
      if (failed) return
      if (s.received + c.length > s.to - s.from) return fail(new Error(`range ${s.from}-${s.to - 1}: more bytes than asked for`))
      const at = s.received
      s.received += c.length
      if (s.slot !== undefined) return spoolChunk(s, body, c, at)
      s.chunks.push(c)
      s.buffered += c.length
      if (s === segs[0]) arrived()
      if (s.buffered >= HIGH_WATER) body.pause()
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
      if (s === segs[segs.length - 1] && s.to < size && !failed) open(s.to, Math.min(size, s.to + nextWindow(s)))
      if (s === segs[0]) drain()
    })
    body.on('error', (e) => {
      if (!s.done) fail(e)
    })
  }

  /** A part's chunk into its slot; the connection waits while HIGH_WATER of it is being written. */
  const spoolChunk = (s: Segment, body: Readable, c: Buffer, at: number) => {
    const slot = s.slot!
    s.writing += c.length
    if (s.writing >= HIGH_WATER) body.pause()
    s.writes = s.writes.then(() => spool.write(slot, at, c)).then(() => {
      // in the slot: the chunk's buffer can be read into again
      doneWith(c)
      s.writing -= c.length
      s.spooled += c.length
      if (failed) return
      if (body.isPaused() && s.writing < HIGH_WATER / 2) body.resume()
      if (s === segs[0]) {
        arrived()
        if (wanted) drain()
      }
    })
    s.writes.catch(fail)
  }

  /** The next bytes of the first segment, a part, read back from its slot for the consumer. */
  const readBack = (s: Segment) => {
    s.reading = true
    const n = Math.min(READ_BACK, s.spooled - s.readBack)
    const buf = takeBuffer(READ_BACK)
    spool.read(s.slot!, s.readBack, buf, n).then((got) => {
      s.reading = false
      if (failed) return recycle(buf)
      if (got !== n) return fail(new Error(`range ${s.from}-${s.to - 1}: ${got} of ${n} bytes read back from the spool`))
      const view = buf.subarray(0, n)
      handOut(view, buf)
      s.readBack += n
      wanted = out.push(view)
      drain()
    }, fail)
  }

  /** The size of the window after `s`, a window just in: the rest of the blob if it came fast. */
  const nextWindow = (s: Segment): number => {
    const bytes = s.to - s.from
    const seconds = (performance.now() - s.askedAt) / 1000
    return s.slot === undefined && bytes >= seconds * FAST_WINDOW_BYTES_PER_S ? size - s.to : WINDOW_BYTES
  }

  const segment = (from: number, to: number, slot?: number): Segment => {
    const s: Segment = {from, to, askedAt: performance.now(), received: 0, chunks: [], buffered: 0, done: false, slot, writes: Promise.resolve(), writing: 0, spooled: 0, readBack: 0, reading: false}
    segs.push(s)
    return s
  }
  const open = (from: number, to: number, slot?: number): void => {
    const s = segment(from, to, slot)
    fetchRange(from, to - 1).then((body) => attach(s, body), fail)
  }

  // The consumer waits: fetch parts after what is already asked for, as the budget allows.
  const split = () => {
    const last = segs[segs.length - 1]
    if (!last) return
    let start = last.to
    while (start < size && segs.length <= PARTS_AHEAD) {
      const to = Math.min(size, start + PART_BYTES)
      const slot = spool.take(to - start)
      if (slot === undefined) break
      open(start, to, slot)
      start = to
    }
  }

  /** The consumer asks for bytes that have not come: the wait starts, and may call for parts. */
  const consumerWaits = () => {
    if (!waitingSince) waitingSince = performance.now()
    if (slow()) split()
  }

  const drain = () => {
    while (!failed && segs.length) {
      const s = segs[0]!
      if (s.slot !== undefined) {
        if (s.reading) return
        if (wanted && s.readBack < s.spooled) return readBack(s)
        if (s.readBack < s.to - s.from) {
          // waiting on the network only when nothing is on its way to the slot either
          if (wanted && s.writing === 0) consumerWaits()
          return
        }
        free(s)
      } else {
        while (wanted && s.chunks.length) {
          const c = s.chunks.shift()!
          s.buffered -= c.length
          wanted = out.push(c)
        }
        if (s.body?.isPaused() && s.buffered < HIGH_WATER / 2) s.body.resume()
        if (!(s.done && s.chunks.length === 0)) {
          if (wanted) consumerWaits()
          return
        }
      }
      segs.shift()
      if (s.to >= size) {
        out.push(null)
        return
      }
      // nothing asked for beyond this: the next window, on one connection, until the consumer waits
      if (segs.length === 0) open(s.to, Math.min(size, s.to + WINDOW_BYTES))
    }
  }

  // the first window was asked for before this stream began: its time counts from here
  attach(segment(0, Math.min(size, WINDOW_BYTES)), first)
  return out
}
