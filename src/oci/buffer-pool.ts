/**
 * Buffers that blob bytes are read into (socket reads, archive file reads), given back and read
 * into again rather than allocated per read. Each new buffer is external memory to V8, and every
 * 64 MiB of it starts a full collection (66 of them, 1.3 CPU-s, in one copy of the benchmark
 * platform) while the garbage waiting for it counts in the peak RSS. A chunk goes out as a view of
 * its buffer; the buffer comes back only when every view handed out has been given back by the
 * code that wrote it out and keeps no reference: an upload's socket (its write callback), the
 * archive writer (its file write). Views that go anywhere else (a split, a buffer kept) are never
 * given back: their buffer is collected as any buffer, so a consumer can never see its bytes
 * overwritten.
 *
 * One pool per process: a copy reads from one place and writes to another, so the buffers of one
 * side are given back by the other (a socket read ends in a file write, a file read in a socket
 * write). Free buffers are kept up to FREE_LIMIT bytes: what a copy holds in flight at once, so
 * after the first seconds of a copy nothing more is allocated.
 */

const FREE_LIMIT = 64 << 20

interface Held {
  buf: Buffer
  /** views handed out and not yet given back */
  out: number
}

// What the pool knows of a buffer and of a view is kept on the object itself, under symbols: two
// WeakMaps did it before, and a WeakMap entry per chunk (tens of thousands per copy) cost more
// than the rest of the pool (handOut: 106 ms of kpi's CPU behind the WAN profile) and gave the
// collector ephemerons to trace. Views from the pool share one shape, the property set when they
// are handed out and cleared when they come back.
const kHeld = Symbol('kpi pool: this buffer, taken')
const kBack = Symbol('kpi pool: what gives this view back')
type Taken = Buffer & {[kHeld]?: Held}
type View = Buffer & {[kBack]?: Held | (() => void)}

const free = new Map<number, Buffer[]>()
let freeBytes = 0
const counts = {allocated: 0, reused: 0}

const release = (h: Held): void => {
  ;(h.buf as Taken)[kHeld] = undefined
  if (freeBytes + h.buf.length > FREE_LIMIT) return
  freeBytes += h.buf.length
  let list = free.get(h.buf.length)
  if (!list) free.set(h.buf.length, (list = []))
  list.push(h.buf)
}

/** A buffer of `size` bytes to read into: one given back earlier, or a new one. */
export function takeBuffer(size: number): Buffer {
  let buf = free.get(size)?.pop()
  if (buf) {
    freeBytes -= size
    counts.reused++
  } else {
    buf = Buffer.allocUnsafeSlow(size)
    counts.allocated++
  }
  ;(buf as Taken)[kHeld] = {buf, out: 0}
  return buf
}

/** `view` (of `buf`, from takeBuffer) is handed out: `buf` is read into again only once doneWith(view). */
export function handOut(view: Buffer, buf: Buffer): void {
  const h = (buf as Taken)[kHeld]
  if (!h) return
  h.out++
  ;(view as View)[kBack] = h
}

/**
 * `view` is handed out from memory that is not the pool's (the archive reader's aligned slabs):
 * whoever writes it out gives it back with doneWith as any pooled chunk, and `back` runs then.
 */
export function lend(view: Buffer, back: () => void): void {
  ;(view as View)[kBack] = back
}

/** A buffer from takeBuffer that was read into but none of it handed out: straight back. */
export function recycle(buf: Buffer): void {
  const h = (buf as Taken)[kHeld]
  if (h && h.out === 0) release(h)
}

/**
 * Gives back a chunk that has been written out and is referenced no more, so the buffer it was
 * read into can be read into again; any other chunk is left alone.
 */
export function doneWith(chunk: Buffer): void {
  const back = (chunk as View)[kBack]
  if (back === undefined) return
  ;(chunk as View)[kBack] = undefined
  if (typeof back === 'function') back()
  else if (--back.out === 0) release(back)
}

/** A chunk that doneWith() would give back. */
export const isPooled = (chunk: Buffer): boolean => (chunk as View)[kBack] !== undefined

/** Buffers allocated, and taken again after being given back (for tests and measurement). */
export const poolCounts = (): {allocated: number; reused: number} => ({...counts})
