/**
 * Generates one layer blob: a deterministic tar of text files and PRNG files, gzip-framed,
 * streamed to a temporary file while both digests (blob and diff_id) are computed, then renamed
 * to its digest. Memory stays at a few MiB whatever the layer size.
 *
 * Same spec, same bytes, on any machine: fixed tar headers, sorted entries, AES-CTR content,
 * stored-block gzip (see gzip.ts). GENERATOR_VERSION changes whenever the output would change.
 */
import {createHash, randomUUID} from 'node:crypto'
import {mkdir, open, readFile, rename, unlink} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {END_OF_ARCHIVE, entryHeader, paddingBytes} from '../archive/tar.js'
import {kpiCacheDir} from '../cache-dir.js'
import {MediaTypes} from '../oci/index.js'
import {storedGzip} from './gzip.js'
import {blobDir, blobPath, ensureLayout, exists, writeAtomic} from './layout.js'
import {randomStream} from './prng.js'

export const GENERATOR_VERSION = 'kpi-imagegen/2'
const CHUNK = 1 << 20
/** 1980-01-01T00:00:01Z, the reproducible-build epoch the buildpacks ecosystem uses */
const FIXED_MTIME = 315532801
const DEFAULT_FILE_SIZE = 4 << 20

export interface LayerFile {
  path: string
  content: string
  /** default 0o644 */
  mode?: number
}

export interface LayerSpec {
  /** identity of the generated content: same seed and size, same bytes */
  seed: string
  /** bytes of PRNG content, spread over files of at most `fileSize` */
  size: number
  /** directory of the PRNG files; default `opt/kpi/<seed as a path>` */
  dir?: string
  /** text files, e.g. etc/os-release or buildpack.toml */
  files?: LayerFile[]
  /** largest PRNG file; default 4 MiB */
  fileSize?: number
}

export interface LayerBlob {
  mediaType: string
  /** sha256 of the gzip blob */
  digest: string
  /** size of the gzip blob */
  size: number
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry) */
  diffId: string
  uncompressedSize: number
}

export interface LayerOptions {
  /**
   * Where to remember spec -> digest so an existing blob is reused without regenerating it;
   * default `imagegen` in kpi's cache directory (src/cache-dir.ts). `false`: always generate.
   */
  cacheDir?: string | false
}

export const defaultCacheDir = (): string => join(kpiCacheDir(), 'imagegen')

interface Entry {
  path: string
  mode: number
  kind: 'dir' | 'text' | 'random'
  size: number
  content?: Buffer
}

const slug = (seed: string): string => seed.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80) || 'layer'

function normalize(spec: LayerSpec): Required<Omit<LayerSpec, 'files'>> & {files: LayerFile[]} {
  if (!Number.isSafeInteger(spec.size) || spec.size < 0) throw new Error(`layer ${spec.seed}: size must be a whole number of bytes`)
  const fileSize = spec.fileSize ?? DEFAULT_FILE_SIZE
  if (!Number.isSafeInteger(fileSize) || fileSize <= 0) throw new Error(`layer ${spec.seed}: fileSize must be positive`)
  const clean = (p: string): string => p.replace(/^\/+/, '').replace(/\/+$/, '')
  return {
    seed: spec.seed,
    size: spec.size,
    dir: clean(spec.dir ?? `opt/kpi/${slug(spec.seed)}`),
    fileSize,
    files: (spec.files ?? []).map((f) => ({path: clean(f.path), content: f.content, mode: f.mode ?? 0o644})),
  }
}

/** The tar's entries in order: every parent directory, text files, PRNG files, sorted by path. */
function plan(spec: ReturnType<typeof normalize>): Entry[] {
  const entries = new Map<string, Entry>()
  const addParents = (path: string): void => {
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/') + '/'
      if (!entries.has(d)) entries.set(d, {path: d, mode: 0o755, kind: 'dir', size: 0})
    }
  }
  for (const f of spec.files) {
    const content = Buffer.from(f.content)
    addParents(f.path)
    entries.set(f.path, {path: f.path, mode: f.mode ?? 0o644, kind: 'text', size: content.length, content})
  }
  const n = Math.ceil(spec.size / spec.fileSize)
  for (let i = 0; i < n; i++) {
    const path = `${spec.dir}/data-${String(i).padStart(4, '0')}.bin`
    addParents(path)
    entries.set(path, {path, mode: 0o644, kind: 'random', size: Math.min(spec.fileSize, spec.size - i * spec.fileSize)})
  }
  return [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

/** Cache key: everything that determines the bytes. */
function specKey(spec: ReturnType<typeof normalize>): string {
  return createHash('sha256').update(JSON.stringify({v: GENERATOR_VERSION, spec})).digest('hex')
}

/** Writes the layer blob into `layoutDir` (or finds it there) and returns its description. */
export async function writeLayer(layoutDir: string, spec: LayerSpec, opts: LayerOptions = {}): Promise<LayerBlob> {
  const norm = normalize(spec)
  const key = specKey(norm)
  const cacheDir = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir
  const record = cacheDir === false ? undefined : join(cacheDir, 'layers', `${key}.json`)
  await ensureLayout(layoutDir)
  if (record) {
    const known = await readRecord(record)
    if (known && (await exists(blobPath(layoutDir, known.digest), known.size))) return known
  }
  const blob = await generate(layoutDir, norm)
  if (record) {
    await mkdir(dirname(record), {recursive: true})
    await writeAtomic(record, Buffer.from(JSON.stringify(blob)))
  }
  return blob
}

async function readRecord(path: string): Promise<LayerBlob | undefined> {
  try {
    const r = JSON.parse(await readFile(path, 'utf8')) as LayerBlob
    return typeof r.digest === 'string' && typeof r.size === 'number' && typeof r.diffId === 'string' ? r : undefined
  } catch {
    return undefined
  }
}

async function generate(layoutDir: string, spec: ReturnType<typeof normalize>): Promise<LayerBlob> {
  const tmp = join(blobDir(layoutDir), `.tmp-${randomUUID()}`)
  const fh = await open(tmp, 'w')
  const blobHash = createHash('sha256')
  const diffHash = createHash('sha256')
  const gz = storedGzip()
  const rand = randomStream(spec.seed)
  const chunk = Buffer.allocUnsafeSlow(CHUNK)
  let size = 0
  let uncompressedSize = 0

  const write = async (pieces: Buffer[]): Promise<void> => {
    if (pieces.length === 0) return
    for (const p of pieces) {
      blobHash.update(p)
      size += p.length
    }
    await fh.writev(pieces)
  }
  // Small pieces (headers, padding) are collected and handed to gzip with the next big one.
  let small: Buffer[] = []
  const tar = async (data: Buffer, flush = false): Promise<void> => {
    diffHash.update(data)
    uncompressedSize += data.length
    small.push(data)
    if (!flush && data.length < 64 * 1024) return
    const out: Buffer[] = []
    for (const b of small) out.push(...gz.push(b))
    small = []
    await write(out)
  }

  try {
    for (const e of plan(spec)) {
      await tar(entryHeader(e.path, e.size, {mode: e.mode, mtime: FIXED_MTIME, owner: 'root', directory: e.kind === 'dir'}))
      if (e.kind === 'text' && e.content) await tar(e.content)
      if (e.kind === 'random') {
        // one buffer, refilled: tar() has hashed and written it before it returns
        for (let left = e.size; left > 0; left -= CHUNK) {
          const piece = chunk.subarray(0, Math.min(CHUNK, left))
          rand.fill(piece)
          await tar(piece, true)
        }
      }
      if (e.kind !== 'dir') await tar(paddingBytes(e.size))
    }
    await tar(END_OF_ARCHIVE, true)
    await write(gz.end())
    await fh.close()
  } catch (err) {
    await fh.close().catch(() => undefined)
    await unlink(tmp).catch(() => undefined)
    throw err
  }
  const digest = `sha256:${blobHash.digest('hex')}`
  // the same bytes may exist already (another spec, another run): rename over it is harmless
  await rename(tmp, blobPath(layoutDir, digest))
  return {mediaType: MediaTypes.ociLayerGzip, digest, size, diffId: `sha256:${diffHash.digest('hex')}`, uncompressedSize}
}
