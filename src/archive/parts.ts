/**
 * An archive is one file or a run of parts that concatenate to it (`cat FILE.part* > FILE`
 * gives the whole tar, so standard tools still read a split archive):
 *   single: FILE
 *   split:  FILE.part001, FILE.part002, ... (each exactly the split size but the last)
 * While being written each file carries a `.partial` suffix, renamed only once the whole archive
 * is complete, so a killed run never leaves a file that looks whole.
 * This module reads such a run of files as one byte range and writes one.
 */
import {createReadStream} from 'node:fs'
import {open, readdir, rename, rm, stat, type FileHandle} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {Readable} from 'node:stream'
import {KpiError} from '../errors.js'

export const PARTIAL = '.partial'
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
    return {base: file.slice(0, m.index), files: await contiguous(file.slice(0, m.index))}
  }
  if (await exists(file)) return {base: file, files: [file]}
  const st = await stat(file).catch(() => undefined)
  if (st) throw new KpiError('input', `${file} is not an archive file (it is ${st.isDirectory() ? 'a directory' : 'not a regular file'})`, {hint: 'give the .tar file that kpi relocate --to-tar wrote'})
  if (await exists(partName(file, 1))) return {base: file, files: await contiguous(file)}
  const partial = (await exists(file + PARTIAL)) || (await exists(partName(file, 1) + PARTIAL))
  throw new KpiError('not-found', `archive ${file} not found`, {
    hint: partial ? `only an unfinished ${file}${PARTIAL} exists: finish it with --to-tar ${file} --resume` : 'check the path',
  })
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

/** A run of files read as one byte range. */
export class PartSet {
  readonly files: string[]
  readonly sizes: number[]
  readonly total: number
  private readonly handles: FileHandle[]

  private constructor(files: string[], sizes: number[], handles: FileHandle[]) {
    this.files = files
    this.sizes = sizes
    this.handles = handles
    this.total = sizes.reduce((a, b) => a + b, 0)
  }

  static async open(files: string[]): Promise<PartSet> {
    const handles: FileHandle[] = []
    const sizes: number[] = []
    try {
      for (const f of files) {
        const h = await open(f, 'r')
        handles.push(h)
        sizes.push((await h.stat()).size)
      }
    } catch (e) {
      await Promise.all(handles.map((h) => h.close()))
      throw new KpiError('input', `cannot read archive ${files[handles.length] ?? files[0]}: ${(e as Error).message}`)
    }
    return new PartSet(files, sizes, handles)
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

  /** `length` bytes from `offset` as a stream, across part boundaries */
  stream(offset: number, length: number): Readable {
    if (length === 0) return Readable.from([])
    const {index, at} = this.locate(offset)
    if (index < this.files.length && at + length <= this.sizes[index]!) {
      return createReadStream(this.files[index]!, {start: at, end: at + length - 1, highWaterMark: 1 << 20})
    }
    const files = this.files
    const sizes = this.sizes
    return Readable.from((async function* () {
      let left = length
      let i = index
      let start = at
      while (left > 0 && i < files.length) {
        const n = Math.min(left, sizes[i]! - start)
        if (n > 0) yield* createReadStream(files[i]!, {start, end: start + n - 1, highWaterMark: 1 << 20})
        left -= n
        i++
        start = 0
      }
    })(), {objectMode: false})
  }

  async close(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.close().catch(() => undefined)))
  }
}

/**
 * Sequential output across parts of `splitSize` bytes (or one file), as `.partial` files until
 * `complete()`. `truncate()` cuts back to an offset, so a member that failed half-way leaves
 * no trace and the partial output stays a run of whole members that `--resume` can continue.
 */
export class PartWriter {
  readonly file: string
  readonly splitSize?: number
  offset = 0
  private handles: FileHandle[] = []
  private paths: string[] = []

  private constructor(file: string, splitSize?: number) {
    this.file = file
    this.splitSize = splitSize
  }

  partialPath(n: number): string {
    return (this.splitSize ? partName(this.file, n) : this.file) + PARTIAL
  }

  /** The partial files an earlier run left, in order, if they fit this writer's split size. */
  static async leftovers(file: string, splitSize?: number): Promise<string[]> {
    if (!splitSize) return (await exists(file + PARTIAL)) ? [file + PARTIAL] : []
    const parts = await listParts(file, PARTIAL)
    const out: string[] = []
    for (let i = 1; parts.has(i); i++) out.push(parts.get(i)!)
    // every part but the last must be exactly the split size, or the offsets would not line up
    for (let i = 0; i < out.length - 1; i++) if ((await stat(out[i]!)).size !== splitSize) return []
    return out
  }

  /** Opens for writing; `keep` bytes of the leftovers are kept and the rest cut (0: start anew). */
  static async create(file: string, opts: {splitSize?: number; keep?: number; leftovers?: string[]} = {}): Promise<PartWriter> {
    const w = new PartWriter(file, opts.splitSize)
    const keep = opts.keep ?? 0
    const left = opts.leftovers ?? []
    const size = opts.splitSize ?? Infinity
    const keptParts = keep === 0 ? 0 : Math.floor((keep - 1) / size) + 1
    // drop every partial file of this archive that is not kept (also those of another split size)
    const kept = new Set(left.slice(0, keptParts))
    const all = [file + PARTIAL, ...(await listParts(file, PARTIAL)).values()]
    for (const f of all) if (!kept.has(f)) await rm(f, {force: true})
    if (keep === 0) {
      await w.openPart(1, 'w')
      return w
    }
    for (let n = 1; n <= keptParts; n++) {
      await w.openPart(n, 'r+')
    }
    const lastKeep = keep - (keptParts - 1) * (Number.isFinite(size) ? size : 0)
    await w.handles[keptParts - 1]!.truncate(lastKeep)
    w.offset = keep
    return w
  }

  private async openPart(n: number, flags: 'w' | 'r+'): Promise<void> {
    const p = this.partialPath(n)
    this.handles.push(await open(p, flags, 0o644))
    this.paths.push(p)
  }

  private current(): {h: FileHandle; used: number} {
    const i = this.handles.length - 1
    const used = this.splitSize ? this.offset - i * this.splitSize : this.offset
    return {h: this.handles[i]!, used}
  }

  async write(buf: Buffer): Promise<void> {
    let rest = buf
    while (rest.length > 0) {
      let {h, used} = this.current()
      if (this.splitSize && used >= this.splitSize) {
        await this.openPart(this.handles.length + 1, 'w')
        ;({h, used} = this.current())
      }
      const n = this.splitSize ? Math.min(rest.length, this.splitSize - used) : rest.length
      let written = 0
      while (written < n) {
        const r = await h.write(rest, written, n - written, used + written)
        written += r.bytesWritten
      }
      this.offset += n
      rest = rest.subarray(n)
    }
  }

  /** Cuts the output back to `offset` (at or before the current one). */
  async truncate(offset: number): Promise<void> {
    const size = this.splitSize ?? Infinity
    const keepParts = Math.max(1, offset === 0 ? 1 : Math.floor((offset - 1) / size) + 1)
    while (this.handles.length > keepParts) {
      await this.handles.pop()!.close()
      await rm(this.paths.pop()!, {force: true})
    }
    const lastStart = (keepParts - 1) * (Number.isFinite(size) ? size : 0)
    await this.handles[keepParts - 1]!.truncate(offset - lastStart)
    this.offset = offset
  }

  /** Flushes to disk, renames every partial file to its final name, removes stale parts of an older archive of the same name. */
  async complete(): Promise<string[]> {
    for (const h of this.handles) await h.sync()
    await this.closeAll()
    const finals = this.paths.map((p) => p.slice(0, -PARTIAL.length))
    // an older archive under the same name must not leave parts that would read as part of this one
    const stale = await listParts(this.file)
    for (const [n, f] of stale) if (!this.splitSize || n > finals.length) await rm(f, {force: true})
    if (this.splitSize) await rm(this.file, {force: true})
    for (let i = 0; i < this.paths.length; i++) await rename(this.paths[i]!, finals[i]!)
    return finals
  }

  /** Closes, keeping the partial files for --resume. */
  async closeAll(): Promise<void> {
    const hs = this.handles
    this.handles = []
    await Promise.all(hs.map((h) => h.close().catch(() => undefined)))
  }
}
