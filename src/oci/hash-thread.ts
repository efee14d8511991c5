/**
 * Hashing on a thread of its own. Writing a blob to an archive is, on this thread, a socket read,
 * a file write and the hash: hashing is a third of the CPU (about 1 s per GiB), and with it here
 * one core does everything while the other waits. The hash thread reads the bytes in place (the
 * pool's buffers are shared memory), so nothing is copied; a chunk's buffer is read into again
 * only once the hash thread has read it too (retain/doneWith).
 *
 * One thread for every blob: it hashes faster than one socket fills, and a second thread would
 * cost another few MiB of memory for nothing on the 2-core machines this is measured on.
 */
import {Worker} from 'node:worker_threads'
import {KpiError} from '../errors.js'
import {doneWith, retain} from './buffer-pool.js'

/** bytes gathered before they are sent to the hash thread: one message each */
const BATCH_BYTES = 1 << 20
/** bytes sent to the hash thread and not hashed yet, all blobs together, before their streams wait */
const AHEAD_BYTES = 8 << 20

// run with eval, no file to find next to the compiled module; getBuiltinModule works whether the
// code is taken as CommonJS or as a module (which depends on how the process was started)
const THREAD_CODE = `
const {parentPort} = process.getBuiltinModule('node:worker_threads')
const {createHash} = process.getBuiltinModule('node:crypto')
const hashes = new Map()
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let h = hashes.get(m.id)
    if (!h) hashes.set(m.id, (h = createHash(m.algorithm)))
    for (const p of m.parts) h.update(new Uint8Array(p.buffer, p.offset, p.length))
    parentPort.postMessage({id: m.id, batch: m.batch})
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) ?? createHash(m.algorithm)
    hashes.delete(m.id)
    parentPort.postMessage({id: m.id, digest: h.digest('hex')})
  } else hashes.delete(m.id)
})
`

interface Part {
  buffer: ArrayBufferLike
  offset: number
  length: number
}

interface Pending {
  /** views held until the batch is hashed, and its bytes */
  batches: Map<number, {held: Buffer[]; bytes: number}>
  onDigest?: (hex: string) => void
  onError: (e: Error) => void
}

let thread: Worker | undefined
const pending = new Map<number, Pending>()
let nextId = 1
let ahead = 0
/** streams waiting for the hash thread to catch up */
let waiting: Array<() => void> = []

const hashed = (bytes: number): void => {
  ahead -= bytes
  if (ahead >= AHEAD_BYTES || waiting.length === 0) return
  const wake = waiting
  waiting = []
  for (const w of wake) w()
}

function failAll(e: Error): void {
  thread = undefined
  const all = [...pending.values()]
  pending.clear()
  for (const p of all) p.onError(e)
  for (const p of all) for (const b of p.batches.values()) {
    for (const v of b.held) doneWith(v)
    hashed(b.bytes)
  }
  const wake = waiting
  waiting = []
  for (const w of wake) w()
}

function hashThread(): Worker {
  if (thread) return thread
  const t = new Worker(THREAD_CODE, {eval: true})
  t.on('message', (m: {id: number; batch?: number; digest?: string}) => {
    const p = pending.get(m.id)
    if (!p) return
    if (m.digest !== undefined) {
      pending.delete(m.id)
      if (pending.size === 0) t.unref()
      p.onDigest?.(m.digest)
      return
    }
    const b = p.batches.get(m.batch!)
    if (!b) return
    p.batches.delete(m.batch!)
    for (const v of b.held) doneWith(v)
    hashed(b.bytes)
  })
  t.on('error', (e) => failAll(new KpiError('internal', `the hash thread failed: ${e.message}`, {cause: e})))
  t.on('exit', (code) => {
    if (thread === t) failAll(new KpiError('internal', `the hash thread stopped (exit code ${code})`))
  })
  return (thread = t)
}

/** A blob's hash computed on the hash thread, fed in order. */
export interface ThreadHash {
  /** the chunk is hashed later: its pooled buffer is held until then */
  update(chunk: Buffer): void
  /** resolves when few enough bytes wait to be hashed (at once when so) */
  caughtUp(): Promise<void>
  /** the hex digest of everything given to update() */
  digest(): Promise<string>
  /** stop: nothing more is hashed, held buffers go back */
  drop(): void
}

export function threadHash(algorithm: 'sha256' | 'sha512'): ThreadHash {
  const id = nextId++
  const t = hashThread()
  t.ref()
  let failure: Error | undefined
  const p: Pending = {batches: new Map(), onError: (e) => void (failure = e)}
  pending.set(id, p)
  let parts: Part[] = []
  let held: Buffer[] = []
  let transfer: ArrayBuffer[] = []
  let gathered = 0
  let batch = 0
  let done = false

  const send = (): void => {
    if (parts.length === 0 || failure) return
    p.batches.set(batch, {held, bytes: gathered})
    ahead += gathered
    t.postMessage({op: 'update', id, algorithm, batch, parts}, transfer)
    batch++
    parts = []
    held = []
    transfer = []
    gathered = 0
  }

  return {
    update(chunk) {
      if (done) throw new KpiError('internal', 'hash updated after its digest')
      if (chunk.length === 0) return
      if (chunk.buffer instanceof SharedArrayBuffer) {
        const view = retain(chunk)
        if (view) held.push(view)
        parts.push({buffer: chunk.buffer, offset: chunk.byteOffset, length: chunk.length})
      } else {
        // not shared memory (a TLS socket's reads): a copy, moved to the thread
        const copy = chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.length) as ArrayBuffer
        parts.push({buffer: copy, offset: 0, length: copy.byteLength})
        transfer.push(copy)
      }
      gathered += chunk.length
      if (gathered >= BATCH_BYTES) send()
    },
    caughtUp() {
      if (failure) return Promise.reject(failure)
      if (ahead < AHEAD_BYTES) return Promise.resolve()
      return new Promise((resolve, reject) => waiting.push(() => (failure ? reject(failure) : resolve())))
    },
    digest() {
      done = true
      send()
      if (failure) return Promise.reject(failure)
      return new Promise((resolve, reject) => {
        p.onDigest = resolve
        p.onError = reject
        t.postMessage({op: 'digest', id, algorithm})
      })
    },
    drop() {
      if (!pending.has(id)) return
      done = true
      pending.delete(id)
      for (const v of held) doneWith(v)
      for (const b of p.batches.values()) {
        for (const v of b.held) doneWith(v)
        hashed(b.bytes)
      }
      p.batches.clear()
      t.postMessage({op: 'drop', id})
      if (pending.size === 0) t.unref()
    },
  }
}
