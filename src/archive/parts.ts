/**
 * An archive is one file or a run of parts that concatenate to it (`cat FILE.part* > FILE`
 * gives the whole tar, so standard tools still read a split archive):
 *   single: FILE
 *   split:  FILE.part001, FILE.part002, ... (each exactly the split size but the last)
 * While being written each file carries a `.partial` suffix, renamed only once the whole archive
 * is complete, so a killed run never leaves a file that looks whole.
 * This module reads such a run of files as one byte range and writes one.
 *
 * Writes go around the page cache (O_DIRECT) where the file system takes it: copying 2 GiB into
 * the page cache was most of an archive write's system time (1.8-2.9 s of 4.2-5.4 s for the
 * benchmark platform, all on the thread that also reads the sockets and hashes), and what it
 * left dirty still had to reach the disk before the archive is named complete. Direct writes of
 * aligned 1 MiB slabs, four at a time on the thread pool, put the same 2 GiB on disk in 1.2 s
 * for 0.2 CPU-s, and the archive is durable when the last one returns. Every tar member starts
 * and ends at a multiple of 512, so a member written as one sequence (header, bytes, padding)
 * stays aligned; a split size that is not a multiple of 512, or a file system that refuses
 * (tmpfs before Linux 6.6, some FUSE), writes through the page cache as before.
 */
import {constants, read, write, writeSync} from 'node:fs'
import {open, readdir, rename, rm, stat, type FileHandle} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {Readable} from 'node:stream'
import {KpiError, isKpiError} from '../errors.js'
import {handOut, lend, recycle, takeBuffer} from '../oci/index.js'
import {alignedSlabs, DIRECT_ALIGN, SLAB_BYTES, type Slabs} from './aligned.js'

export const PARTIAL = '.partial'
/**
 * Bytes per read of a member. Each stage between the file and an upload (verifier, counter,
 * socket) holds a chunk or two, so per upload in flight memory is a few chunks: 256 KiB keeps
 * that near 1.5 MiB (1 MiB chunks held about 6 MiB each) at a few thousand reads per GiB.
 */
const READ_CHUNK = 256 << 10
/**
 * Bytes written to a part after which its data is flushed to disk in the background, while the
 * writing goes on: the flush before the archive is named complete then has only the last of it
 * left (it took about 1 s of a 7 s archive write when it all waited for the end). Every 64 MiB
 * rather than 256: on a disk slower than the download (a VM's, 450-500 MB/s here) the flushes
 * keep pace, and the archive write of the benchmark platform took 8.67-8.83 s against
 * 9.32-9.85 s (every 16 MiB: no better than 64).
 */
const SYNC_EVERY = 64 << 20
/**
 * The most bytes one write(2) carries. The kernel sizes each new page-cache folio by the length
 * of the write that creates it, and on a VM whose balloon reports free memory to the host (free
 * page reporting: Firecracker, many cloud VMs) large folios come from memory the host has taken
 * back. Measured there, 2 GiB in 1 MiB writes took 10-14 s of system time, in 32 KiB writes
 * 0.46 s (64 KiB: 0.4-1.8 s; 256 KiB: 2.4 s); the archive of the benchmark platform, written in
 * 1 MiB pwritev batches, took 15-17 s of system time. Go's io.Copy writes 32 KiB at a time, so
 * every peer got the cheap folios.
 */
const WRITE_SLICE = 32 << 10
const partRe = /\.part(\d{3,})$/

export const partName = (file: string, n: number): string => `${file}.part${String(n).padStart(3, '0')}`

const exists = async (f: string): Promise<boolean> => {
  try {
    return (await stat(f)).isFile()
  } catch {
    return false
  }
}

/** Numbers of the parts `base.partNNN` (with `suffix`) present in the directory. */
async function listParts(base: string, suffix = ''): Promise<Map<number, string>> {
  const dir = dirname(base)
  const prefix = basename(base) + '.part'
  const out = new Map<number, string>()
  let names: string[] = []
  try {
    names = await readdir(dir)
  } catch {
    return out
  }
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith(suffix)) continue
    const num = n.slice(prefix.length, n.length - suffix.length)
    if (/^\d{3,}$/.test(num)) out.set(Number(num), join(dir, n))
  }
  return out
}

/**
 * The files of the archive named `file`: `file` itself, or its parts when `file` is a first part
 * (`X.part001`) or when `file` does not exist but `file.part001` does. Names a missing part.
 */
export async function resolveParts(file: string): Promise<{base: string; files: string[]}> {
  const m = partRe.exec(file)
  if (m) {
    if (Number(m[1]) !== 1) {
      throw new KpiError('usage', `${file} is part ${Number(m[1])} of a split archive`, {hint: `give the first part, ${partName(file.slice(0, m.index), 1)}`})
    }
    const base = file.slice(0, m.index)
    // a first part that is there, as a directory too (PartSet.open names that)
    if (!(await stat(file).catch(() => undefined))) throw await notFound(file, base)
    return {base, files: await contiguous(base)}
  }
  if (await exists(file)) return {base: file, files: [file]}
  const st = await stat(file).catch(() => undefined)
  if (st) throw new KpiError('input', `${file} is not an archive file (it is ${st.isDirectory() ? 'a directory' : 'not a regular file'})`, {hint: 'give the .tar file that kpi relocate --to-tar wrote'})
  if (await exists(partName(file, 1))) return {base: file, files: await contiguous(file)}
  throw await notFound(file, file)
}

/** `file` (the archive `base` or its first part) is not there: points at what an interrupted run left, if anything. */
async function notFound(file: string, base: string): Promise<KpiError> {
  const single = base + PARTIAL
  const split = partName(base, 1) + PARTIAL
  let hint = 'check the path'
  if (await exists(single)) hint = `only an unfinished ${single} exists: finish it with --to-tar ${base} --resume`
  else if (await exists(split)) hint = `only an unfinished ${split} exists: finish it with --to-tar ${base} --resume and the --split size it was written with`
  return new KpiError('not-found', `archive ${file} not found`, {hint})
}

/**
 * Refuses to write the archive `file` when a name it would write, rename or remove (FILE, its
 * parts, their partial files) is a directory or anything but a regular file: the rename at the
 * end would fail only after every blob had been downloaded.
 */
export async function checkArchiveTarget(file: string): Promise<void> {
  const names = [file, file + PARTIAL, ...(await listParts(file)).values(), ...(await listParts(file, PARTIAL)).values()]
  for (const f of names) {
    const st = await stat(f).catch(() => undefined)
    if (!st || st.isFile()) continue
    const what = st.isDirectory() ? 'a directory' : 'not a regular file'
    throw new KpiError('input', `cannot write archive ${file}: ${f} is ${what}`, {
      hint: f === file && st.isDirectory() ? `name the archive file to write, e.g. ${join(file, 'bundle.tar')}` : `move ${f} out of the way`,
    })
  }
}

async function contiguous(base: string): Promise<string[]> {
  const parts = await listParts(base)
  const max = Math.max(0, ...parts.keys())
  const files: string[] = []
  for (let i = 1; i <= max; i++) {
    const f = parts.get(i)
    if (!f) {
      throw new KpiError('input', `split archive ${base}: part ${partName(base, i)} is missing (found ${parts.size} of at least ${max} parts)`, {
        hint: 'copy every part of the archive into the same directory',
      })
    }
    files.push(f)
  }
  return files
}

/** Bytes per direct read of a member, and how many such reads may be out at once (8 MiB). */
const DIRECT_READ = 256 << 10
const DIRECT_READS = 32

/** A run of files read as one byte range. */
export class PartSet {
  readonly files: string[]
  readonly sizes: number[]
  readonly total: number
  private readonly handles: FileHandle[]
  /** the same files opened for reads around the page cache, when the file system takes them */
  private direct?: {fds: number[]; handles: FileHandle[]; slabs: Slabs}

  private constructor(files: string[], sizes: number[], handles: FileHandle[]) {
    this.files = files
    this.sizes = sizes
    this.handles = handles
    this.total = sizes.reduce((a, b) => a + b, 0)
  }

  /** whether member streams read around the page cache */
  get isDirect(): boolean {
    return this.direct !== undefined
  }

  static async open(files: string[], opts: {direct?: boolean} = {}): Promise<PartSet> {
    const handles: FileHandle[] = []
    const sizes: number[] = []
    try {
      for (const f of files) {
        // before the open, which would wait forever on a FIFO; a directory would fail only at the first read
        const st = await stat(f)
        if (!st.isFile()) {
          throw new KpiError('input', `${f} is not an archive file (it is ${st.isDirectory() ? 'a directory' : 'not a regular file'})`, {
            hint: partRe.test(f) ? 'every part of a split archive is a file kpi relocate --to-tar wrote; copy the parts again' : 'give the .tar file that kpi relocate --to-tar wrote',
          })
        }
        const h = await open(f, 'r')
        handles.push(h)
        sizes.push((await h.stat()).size)
      }
    } catch (e) {
      await Promise.all(handles.map((h) => h.close()))
      if (isKpiError(e)) throw e
      throw new KpiError('input', `cannot read archive ${files[handles.length] ?? files[0]}: ${(e as Error).message}`)
    }
    const set = new PartSet(files, sizes, handles)
    if (opts.direct !== false) await set.openDirect()
    return set
  }

  /**
   * Opens every part for O_DIRECT reads and tries one; on any refusal the streams read through
   * the page cache. An archive arrives on a drive and is read once: through the page cache every
   * page of it is allocated, filled and dropped again (1.2-1.6 system-s per 2 GiB here, on the
   * thread that also drives the uploads), where a direct read lands in the buffer the upload
   * sends from.
   */
  private async openDirect(): Promise<void> {
    const opened: FileHandle[] = []
    try {
      for (const f of this.files) opened.push(await open(f, constants.O_RDONLY | constants.O_DIRECT))
      const slabs = alignedSlabs(DIRECT_READS, DIRECT_READ)
      const probe = await slabs.take()
      try {
        await opened[0]!.read(probe, 0, DIRECT_ALIGN, 0)
      } finally {
        slabs.give(probe)
      }
      this.direct = {fds: opened.map((h) => h.fd), handles: opened, slabs}
    } catch {
      await Promise.all(opened.map((h) => h.close().catch(() => undefined)))
    }
  }

  /** which file holds virtual offset `offset`, and where in it */
  locate(offset: number): {index: number; at: number} {
    let at = offset
    for (let i = 0; i < this.sizes.length; i++) {
      if (at < this.sizes[i]!) return {index: i, at}
      at -= this.sizes[i]!
    }
    return {index: this.sizes.length, at}
  }

  /** up to `length` bytes from `offset` (fewer at the end) */
  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length)
    let done = 0
    let {index, at} = this.locate(offset)
    while (done < length && index < this.handles.length) {
      const want = Math.min(length - done, this.sizes[index]! - at)
      const {bytesRead} = await this.handles[index]!.read(out, done, want, at)
      done += bytesRead
      if (bytesRead < want) break
      index++
      at = 0
    }
    return done === length ? out : out.subarray(0, done)
  }

  /**
   * `length` bytes from `offset` as a stream, across part boundaries. Read into buffers of the
   * process's pool: an upload's socket gives each chunk back once written (buffer-pool.ts), so a
   * read of gigabytes allocates a few MiB (2.1 GiB in 256 KiB buffers before, each one garbage).
   */
  stream(offset: number, length: number): Readable {
    let {index, at} = this.locate(offset)
    let left = length
    const fds = this.handles.map((h) => h.fd)
    const sizes = this.sizes
    const files = this.files
    const direct = this.direct
    return new Readable({
      highWaterMark: READ_CHUNK,
      read() {
        if (left === 0) return void this.push(null)
        while (index < sizes.length && at >= sizes[index]!) {
          index++
          at = 0
        }
        if (index >= sizes.length) return void this.destroy(new Error(`${files[files.length - 1]}: ended ${left} bytes early`))
        // around the page cache while an aligned slab is free (one never given back, by a
        // consumer that keeps its chunks, only sends the next reads through the cache)
        const slab = direct?.slabs.tryTake()
        if (slab) {
          const skip = at % DIRECT_ALIGN
          const span = Math.min(left, sizes[index]! - at, DIRECT_READ - skip)
          const from = at - skip
          read(direct!.fds[index]!, slab, 0, Math.ceil((skip + span) / DIRECT_ALIGN) * DIRECT_ALIGN, from, (err, n) => {
            const got = Math.min(n - skip, span)
            if (err || !(got > 0)) {
              direct!.slabs.give(slab)
              return void this.destroy(err ?? new Error(`${files[index]}: ended ${left} bytes early`))
            }
            at += got
            left -= got
            const view = slab.subarray(skip, skip + got)
            lend(view, () => direct!.slabs.give(slab))
            this.push(view)
          })
          return
        }
        const want = Math.min(left, READ_CHUNK, sizes[index]! - at)
        const buf = takeBuffer(READ_CHUNK)
        read(fds[index]!, buf, 0, want, at, (err, n) => {
          if (err || n === 0) {
            recycle(buf)
            return void this.destroy(err ?? new Error(`${files[index]}: ended ${left} bytes early`))
          }
          at += n
          left -= n
          const view = buf.subarray(0, n)
          handOut(view, buf)
          this.push(view)
        })
      },
    })
  }

  async close(): Promise<void> {
    const all = [...this.handles, ...(this.direct?.handles ?? [])]
    this.direct = undefined
    await Promise.all(all.map((h) => h.close().catch(() => undefined)))
  }
}

/**
 * `bufs` one after another from `pos`, in writes of at most WRITE_SLICE bytes, on this thread: a
 * write into the page cache takes microseconds, a thread-pool round trip per 32 KiB cost more than
 * the writes (archive of the benchmark platform, in alternation: 4.28-4.62 s and 4.3 CPU-s this
 * way, 5.62-6.22 s and 5.6-6.0 CPU-s through the pool). Flushes to disk stay on the pool.
 */
function writeSliced(fd: number, bufs: readonly Buffer[], pos: number): void {
  for (const b of bufs) {
    for (let off = 0; off < b.length;) {
      const n = writeSync(fd, b, off, Math.min(WRITE_SLICE, b.length - off), pos)
      if (n === 0) throw new Error(`wrote 0 bytes at offset ${pos}`)
      off += n
      pos += n
    }
  }
}

/**
 * Flushes a directory's entries to disk: a rename is durable only once its directory is, so an
 * archive reported complete keeps its final name through a power loss. File systems that cannot
 * sync a directory (some network and FUSE ones) say EINVAL or ENOTSUP; that is not a failure.
 */
async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await h.sync()
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e
  } finally {
    await h.close()
  }
}

export interface SequenceWriter {
  /** appends `bufs`; resolves once they may be reused (copied, or written) */
  write(bufs: readonly Buffer[]): Promise<void>
  /** pads with zeros to a multiple of 512 and waits until everything is written */
  end(): Promise<void>
  /**
   * gives up: what is in flight finishes on its own (settled() waits for it); the promise
   * resolves once this sequence's writes in flight are done, so that a member written again at
   * the same place is not overwritten by a late write of the one given up
   */
  abandon(): Promise<void>
}

/**
 * Output across parts of `splitSize` bytes (or one file), as `.partial` files until
 * `complete()`, written at any offset: the archive's layout is computed up front, so blobs are
 * written side by side, each at its own place. Part files are created as the offsets that fall
 * in them are first written. Partial files of an earlier run are kept only for `resume` (the
 * writer then checks what they hold, member by member); any other partial files of this archive
 * are removed, as are those of another split scheme.
 */
export class PartWriter {
  readonly file: string
  readonly splitSize?: number
  /** partial files of an earlier run were found and kept (resume) */
  existing = false
  private readonly parts = new Map<number, Promise<FileHandle>>()
  private readonly pending = new Set<Promise<unknown>>()
  /** per part: bytes written since its last background flush, and whether one is running */
  private readonly unsynced = new Map<number, {bytes: number; syncing: boolean}>()
  /**
   * Writes bypass the page cache (O_DIRECT, aligned.ts) unless the first of them is refused;
   * undefined: not tried yet. `parts` stays for reads, truncation, the last flush and the writes
   * through the page cache.
   */
  private direct: boolean | undefined
  private readonly directParts = new Map<number, Promise<FileHandle>>()
  private slabs?: Slabs
  private probe?: Promise<boolean>
  /** closeAll has begun: a write that comes later (one that waited for a slab) must not reopen a part */
  private closing = false

  private constructor(file: string, splitSize?: number) {
    this.file = file
    this.splitSize = splitSize
  }

  /** whether the writes so far went around the page cache */
  get isDirect(): boolean {
    return this.direct === true
  }

  partialPath(n: number): string {
    return (this.splitSize ? partName(this.file, n) : this.file) + PARTIAL
  }

  static async open(file: string, opts: {splitSize?: number; resume?: boolean; direct?: boolean} = {}): Promise<PartWriter> {
    await checkArchiveTarget(file)
    const w = new PartWriter(file, opts.splitSize)
    // parts must start at aligned offsets of the whole for every write to stay aligned
    if (opts.direct === false || (opts.splitSize !== undefined && opts.splitSize % DIRECT_ALIGN !== 0)) w.direct = false
    const split = await listParts(file, PARTIAL)
    const single = (await exists(file + PARTIAL)) ? [file + PARTIAL] : []
    const mine: Array<[number, string]> = opts.splitSize ? [...split.entries()] : single.map((f) => [1, f])
    const others = opts.splitSize ? single : [...split.values()]
    for (const f of others) await rm(f, {force: true})
    if (opts.resume && mine.length > 0) {
      for (const [n, f] of mine) w.parts.set(n, open(f, 'r+'))
      await Promise.all(w.parts.values())
      w.existing = true
    } else {
      for (const [, f] of mine) await rm(f, {force: true})
    }
    return w
  }

  private handle(n: number): Promise<FileHandle> {
    let h = this.parts.get(n)
    if (!h) {
      h = open(this.partialPath(n), 'w+', 0o644)
      this.parts.set(n, h)
    }
    return h
  }

  /** the part's file opened for writes that bypass the page cache (created by handle() first) */
  private directHandle(n: number): Promise<FileHandle> {
    let h = this.directParts.get(n)
    if (!h) {
      h = this.handle(n).then(() => open(this.partialPath(n), constants.O_WRONLY | constants.O_DIRECT))
      this.directParts.set(n, h)
    }
    return h
  }

  /** [offset, offset + length) cut at part boundaries: part number, offset in it, length */
  private *pieces(offset: number, length: number): Generator<{n: number; at: number; len: number}> {
    const size = this.splitSize
    while (length > 0) {
      const n = size ? Math.floor(offset / size) : 0
      const at = size ? offset - n * size : offset
      const len = size ? Math.min(length, size - at) : length
      yield {n: n + 1, at, len}
      offset += len
      length -= len
    }
  }

  /** close, truncate and complete wait for what is in flight (a stream destroyed mid-write) */
  private track<T>(p: Promise<T>): Promise<T> {
    this.pending.add(p)
    const settle = () => void this.pending.delete(p)
    p.then(settle, settle)
    return p
  }

  private wrote(n: number, h: FileHandle, len: number): void {
    if (this.direct) return
    const u = this.unsynced.get(n) ?? {bytes: 0, syncing: false}
    this.unsynced.set(n, u)
    u.bytes += len
    if (u.syncing || u.bytes < SYNC_EVERY) return
    u.syncing = true
    u.bytes = 0
    // only a head start for the last flush: a failure here shows there, where it counts
    void this.track(h.datasync().catch(() => undefined).finally(() => { u.syncing = false }))
  }

  private async writeAll(offset: number, bufs: readonly Buffer[]): Promise<void> {
    if (this.closing) throw new Error(`${this.file} is closed`)
    let i = 0
    let skip = 0
    const total = bufs.reduce((a, b) => a + b.length, 0)
    for (const {n, at, len} of this.pieces(offset, total)) {
      const iov: Buffer[] = []
      for (let need = len; need > 0;) {
        const b = bufs[i]!
        const take = Math.min(b.length - skip, need)
        if (take > 0) iov.push(b.subarray(skip, skip + take))
        need -= take
        skip += take
        if (skip === b.length) {
          i++
          skip = 0
        }
      }
      const h = await this.handle(n)
      writeSliced(h.fd, iov, at)
      this.wrote(n, h, len)
    }
  }

  /**
   * Writes with O_DIRECT `len` bytes of `slab` at `offset` (aligned: offset, length and memory),
   * through the thread pool: the data goes from this buffer to the disk, with no copy into the
   * page cache, whose allocation was most of an archive write's system time, and nothing is left
   * dirty for the last flush.
   */
  private async writeDirect(offset: number, slab: Buffer, len: number): Promise<void> {
    if (this.closing) throw new Error(`${this.file} is closed`)
    let done = 0
    for (const {n, at, len: piece} of this.pieces(offset, len)) {
      const h = await this.directHandle(n)
      for (let off = 0; off < piece;) {
        const wrote = await new Promise<number>((resolve, reject) => {
          write(h.fd, slab, done + off, piece - off, at + off, (e, k) => (e ? reject(e) : resolve(k)))
        })
        if (wrote === 0) throw new Error(`wrote 0 bytes at offset ${at + off}`)
        off += wrote
      }
      done += piece
    }
  }

  /**
   * Whether writes go around the page cache: tried once, on the first write (the archive's first
   * member, before any blob), and given up for good if the file system or the alignment refuses.
   */
  private tryDirect(): Promise<boolean> {
    if (this.direct !== undefined) return Promise.resolve(this.direct)
    this.probe ??= this.probeDirect()
    return this.probe
  }

  private async probeDirect(): Promise<boolean> {
    this.slabs = alignedSlabs()
    const slab = await this.slabs.take()
    try {
      slab.fill(0, 0, DIRECT_ALIGN)
      // the probe writes zeros where the archive's first member goes right after
      await this.writeDirect(0, slab, DIRECT_ALIGN)
      this.direct = true
    } catch {
      this.direct = false
      await Promise.all([...this.directParts.values()].map((h) => h.then((x) => x.close(), () => undefined)))
      this.directParts.clear()
    } finally {
      this.slabs.give(slab)
    }
    return this.direct
  }

  /**
   * A run of bytes written in order from `start` (aligned to 512: every tar member is), padded
   * with zeros to the next multiple of 512 at end() (a member's padding). In direct mode the
   * bytes are gathered into aligned slabs, each written whole while the next fills; write()
   * resolves once its buffers are copied, so they can be reused at once.
   */
  sequence(start: number): SequenceWriter {
    if (start % DIRECT_ALIGN !== 0) throw new Error(`a sequence starts at ${start}, not at a multiple of ${DIRECT_ALIGN}`)
    let at = start
    let slab: Buffer | undefined
    let filled = 0
    let failed: unknown
    const writes = new Set<Promise<void>>()
    const fail = (e: unknown): void => { failed ??= e }
    const flush = (len: number): void => {
      const s = slab!
      const p = this.writeDirect(at, s, len).catch(fail).finally(() => {
        writes.delete(p)
        this.slabs!.give(s)
      })
      writes.add(p)
      void this.track(p)
      at += len
      slab = undefined
      filled = 0
    }
    const buffered = async (bufs: readonly Buffer[]): Promise<void> => {
      const from = at
      at += bufs.reduce((a, b) => a + b.length, 0)
      const p = this.track(this.writeAll(from, bufs))
      const settle = () => void writes.delete(done)
      const done: Promise<void> = p.then(settle, settle)
      writes.add(done)
      await p
    }
    return {
      write: async (bufs) => {
        if (failed) throw failed
        if (!(await this.tryDirect())) return buffered(bufs)
        for (const b of bufs) {
          for (let off = 0; off < b.length;) {
            slab ??= await this.slabs!.take()
            const n = b.copy(slab, filled, off, Math.min(b.length, off + SLAB_BYTES - filled))
            filled += n
            off += n
            if (filled === SLAB_BYTES) flush(SLAB_BYTES)
          }
        }
      },
      end: async () => {
        if (failed) throw failed
        const direct = await this.tryDirect()
        const pad = (DIRECT_ALIGN - ((at - start + filled) % DIRECT_ALIGN)) % DIRECT_ALIGN
        if (!direct) {
          if (pad > 0) await buffered([Buffer.alloc(pad)])
          return
        }
        if (filled + pad > 0) {
          slab ??= await this.slabs!.take()
          slab.fill(0, filled, filled + pad)
          flush(filled + pad)
        }
        await Promise.all([...writes])
        if (failed) throw failed
      },
      abandon: async () => {
        if (slab) this.slabs!.give(slab)
        slab = undefined
        await Promise.allSettled([...writes])
      },
    }
  }

  /** Up to `length` bytes from `offset` (fewer where a part ends early). */
  async readAt(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length)
    let done = 0
    for (const {n, at, len} of this.pieces(offset, length)) {
      const h = this.parts.get(n)
      if (!h) break
      const {bytesRead} = await (await h).read(out, done, len, at)
      done += bytesRead
      if (bytesRead < len) break
    }
    return done === length ? out : out.subarray(0, done)
  }

  /** Waits for every write in flight. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }

  /**
   * Cuts the output to `total` bytes (parts to the split size), flushes it to disk, renames
   * every partial file to its final name, removes stale parts of an older archive of the same name.
   */
  async complete(total: number): Promise<string[]> {
    await this.settled()
    const size = this.splitSize
    const last = size ? Math.max(1, Math.ceil(total / size)) : 1
    const paths: string[] = []
    for (let n = 1; n <= last; n++) {
      const h = await this.handle(n)
      await h.truncate(size ? (n < last ? size : total - (last - 1) * size) : total)
      await h.sync()
      paths.push(this.partialPath(n))
    }
    const extra = [...this.parts.keys()].filter((n) => n > last)
    await this.closeAll()
    for (const n of extra) await rm(this.partialPath(n), {force: true})
    const finals = paths.map((p) => p.slice(0, -PARTIAL.length))
    // an older archive under the same name must not leave parts that would read as part of this one
    const stale = await listParts(this.file)
    for (const [n, f] of stale) if (!size || n > finals.length) await rm(f, {force: true})
    if (size) await rm(this.file, {force: true})
    for (let i = 0; i < paths.length; i++) await rename(paths[i]!, finals[i]!)
    await syncDir(dirname(this.file))
    return finals
  }

  /** Closes, keeping the partial files for --resume. */
  async closeAll(): Promise<void> {
    this.closing = true
    await this.settled()
    const hs = [...this.parts.values(), ...this.directParts.values()]
    this.parts.clear()
    this.directParts.clear()
    await Promise.all(hs.map((h) => h.then((x) => x.close()).catch(() => undefined)))
  }
}
