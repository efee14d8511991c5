/**
 * The archive format without registries: images come from an OCI layout directory written by the
 * image generator (a real source through the same engine), and the archives are checked with
 * kpi's reader, GNU tar, Python's tarfile and skopeo.
 */
import {execFile} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {copyFile, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, stat, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {relocateToArchive} from '../src/archive/actions.js'
import {secretReason} from '../src/archive/bundle-files.js'
import {openOciLayout} from '../src/archive/layout.js'
import {PartSet} from '../src/archive/parts.js'
import {openArchive} from '../src/archive/reader.js'
import {scanTar} from '../src/archive/scan.js'
import {BLOCK, MAX_OCTAL_SIZE, fileHeader, paddedSize, parseHeader, parsePax, paxRecord, readNumber} from '../src/archive/tar.js'
import {blobMember, type Toc} from '../src/archive/toc.js'
import {verifyArchive} from '../src/archive/verify.js'
import {bundleImages, loadBundle} from '../src/bundle/index.js'
import type {LoadedBundle} from '../src/bundle/types.js'
import {generateSample, writeBundleDir, type SampleResult} from '../src/imagegen/index.js'
import {formatError, isKpiError} from '../src/errors.js'
import type {ProgressEvent} from '../src/progress/events.js'
import {takesDirectIo} from './helpers/direct-io.js'
import {repackTar, type TarEntry} from './helpers/tar.js'

const run = promisify(execFile)
let dir: string
let layout: string
let v1: SampleResult
let v2: SampleResult
let b1: LoadedBundle
let b2: LoadedBundle
let whole: string
/** the one line a user sees: message and hint */
const failure = (p: Promise<unknown>): Promise<string> => p.then(() => 'no error', (e) => formatError(e))
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

const write = async (file: string, bundle: LoadedBundle, extra: Partial<Parameters<typeof relocateToArchive>[0]> = {}) => {
  const {source} = await openOciLayout(layout)
  return relocateToArchive({bundle, file, source, ...extra})
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-archive-format-'))
  layout = join(dir, 'layout')
  v1 = await generateSample({version: 'v1', layoutDir: layout})
  v2 = await generateSample({version: 'v2', layoutDir: layout})
  b1 = await loadBundle(await writeBundleDir(v1.bundle('registry.example', 'sample'), join(dir, 'bundle-v1')))
  b2 = await loadBundle(await writeBundleDir(v2.bundle('registry.example', 'sample'), join(dir, 'bundle-v2')))
  whole = join(dir, 'v1.tar')
  await write(whole, b1)
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('tar headers', () => {
  it('round-trips a plain member header', () => {
    const h = fileHeader('blobs/sha256/' + 'a'.repeat(64), 1234)
    expect(h.length).toBe(BLOCK)
    expect(parseHeader(h)).toMatchObject({name: 'blobs/sha256/' + 'a'.repeat(64), size: 1234, type: '0'})
  })

  it('puts a long name in the ustar prefix or a PAX path', () => {
    const mid = 'kpi/bundle/' + 'd/'.repeat(60) + 'file.txt'
    expect(parseHeader(fileHeader(mid, 1))!.name).toBe(mid)
    const long = 'kpi/bundle/' + 'x'.repeat(300)
    const h = fileHeader(long, 1)
    expect(parseHeader(h.subarray(0, BLOCK))!.type).toBe('x')
    const paxLen = parseHeader(h.subarray(0, BLOCK))!.size
    expect(parsePax(h.subarray(BLOCK, BLOCK + paxLen)).path).toBe(long)
  })

  it('encodes sizes of 8 GiB and more as PAX size plus base-256', () => {
    const size = 9 * 1024 ** 3 + 7
    const h = fileHeader('blobs/sha256/' + 'b'.repeat(64), size)
    const pax = parseHeader(h.subarray(0, BLOCK))!
    expect(pax.type).toBe('x')
    expect(parsePax(h.subarray(BLOCK, BLOCK + pax.size)).size).toBe(String(size))
    const main = h.subarray(h.length - BLOCK)
    expect(main[124]).toBe(0x80)
    expect(readNumber(main, 124, 12)).toBe(size)
    expect(parseHeader(main)!.size).toBe(size)
    // just below the limit stays octal, no PAX
    expect(fileHeader('x', MAX_OCTAL_SIZE).length).toBe(BLOCK)
  })

  it('writes a 9 GiB member that GNU tar, Python and kpi list with its size (sparse file, no 9 GiB written)', async () => {
    const size = 9 * 1024 ** 3 + 5
    const file = join(dir, 'big.tar')
    const h = fileHeader('blobs/sha256/' + 'c'.repeat(64), size)
    const f = await open(file, 'w')
    await f.write(h, 0, h.length, 0)
    const end = h.length + size + ((BLOCK - (size % BLOCK)) % BLOCK)
    await f.write(Buffer.alloc(2 * BLOCK), 0, 2 * BLOCK, end)
    await f.close()
    const gnu = await run('tar', ['-tvf', file])
    expect(gnu.stdout).toContain(String(size))
    const py = await run('python3', ['-c', 'import sys,tarfile\nfor m in tarfile.open(sys.argv[1]): print(m.name, m.size)', file])
    expect(py.stdout.trim()).toBe(`blobs/sha256/${'c'.repeat(64)} ${size}`)
    const ps = await PartSet.open([file])
    const scan = await scanTar(ps, file)
    await ps.close()
    expect(scan.members.map((m) => [m.name, m.size])).toEqual([[`blobs/sha256/${'c'.repeat(64)}`, size]])
  })
})

describe('writing an archive', () => {
  it('is a standard OCI layout tar: oci-layout first, the toc last, every image named in index.json', async () => {
    const {stdout} = await run('tar', ['-tf', whole])
    const names = stdout.trim().split('\n')
    expect(names[0]).toBe('oci-layout')
    expect(names.at(-1)).toBe('kpi/toc.json')
    expect(names).toContain('index.json')
    expect(names).toContain('kpi/bundle/bundle.yaml')
    expect(names).toContain('kpi/bundle/README.txt')
    expect(new Set(names).size).toBe(names.length)
    const a = await openArchive(whole)
    try {
      expect(a.toc.bundle).toMatchObject({name: b1.bundle.metadata.name, version: b1.bundle.metadata.version})
      expect(a.toc.images.map((i) => [i.path, i.digest])).toEqual(v1.images.map((i) => [i.path, i.digest]))
      const run = a.toc.images.find((i) => i.path === 'stacks[0].runImage')!
      expect(run.platforms.sort()).toEqual(['linux/amd64', 'linux/arm64'])
      expect(a.toc.images.find((i) => i.path === 'kpack.images.controller')!.platforms).toEqual(['linux/amd64'])
      expect(a.toc.external).toEqual([])
      expect(a.toc.archivedBytes).toBe(a.toc.uniqueBytes)
      for (const d of a.index.manifests) expect(a.toc.images.some((i) => i.name === d.annotations?.['org.opencontainers.image.ref.name'])).toBe(true)
      expect((await readFile(whole)).toString('latin1')).not.toContain('.partial')
    } finally {
      await a.close()
    }
    await expect(stat(whole + '.partial')).rejects.toThrow()
    expect((await verifyArchive(whole)).ok).toBe(true)
  })

  it('gives the same bytes every time', async () => {
    const again = join(dir, 'again.tar')
    await write(again, b1)
    expect(sha(await readFile(again))).toBe(sha(await readFile(whole)))
  })

  it('lets skopeo read every image by its name with the same digest', async () => {
    const a = await openArchive(whole)
    const images = a.toc.images
    await a.close()
    for (const img of images) {
      const {stdout} = await run('skopeo', ['inspect', '--raw', `oci-archive:${whole}:${img.name}`], {encoding: 'buffer', maxBuffer: 1 << 24})
      expect(`sha256:${sha(stdout as unknown as Buffer)}`, img.path).toBe(img.digest)
    }
  })

  it('resumes an interrupted run to the same bytes', async () => {
    const file = join(dir, 'resumed.tar')
    const ctl = new AbortController()
    let copied = 0
    const onEvent = (e: ProgressEvent) => {
      if (e.type === 'blob' && e.action === 'copied' && ++copied === 7) ctl.abort()
    }
    await expect(write(file, b1, {signal: ctl.signal, onEvent})).rejects.toThrow(/interrupted/)
    await expect(stat(file)).rejects.toThrow()
    const partial = (await stat(file + '.partial')).size
    expect(partial).toBeGreaterThan(0)
    const events: ProgressEvent[] = []
    const r = await write(file, b1, {resume: true, onEvent: (e) => events.push(e)})
    // blobs are written side by side: every one reported copied is kept (those that finished
    // after the abort too), whatever order they finished in
    expect(r.archive.resumed.blobs).toBeGreaterThanOrEqual(copied)
    expect(events.some((e) => e.type === 'info' && e.message.includes(`kept ${r.archive.resumed.blobs} blobs`))).toBe(true)
    expect(sha(await readFile(file))).toBe(sha(await readFile(whole)))
    await expect(stat(file + '.partial')).rejects.toThrow()
  })

  it('resumes from a partial file cut in the middle of a member, or with a damaged member', async () => {
    const bytes = await readFile(whole)
    const a = await openArchive(whole)
    const layers = a.toc.blobs.filter((b) => b.size > 20_000)
    const cutIn = a.members.get(blobMember(layers[3]!.digest))!
    const damage = a.members.get(blobMember(layers[1]!.digest))!
    await a.close()
    const file = join(dir, 'cut.tar')
    // a SIGKILL mid-write: the partial ends inside a member
    await writeFile(file + '.partial', bytes.subarray(0, cutIn.offset + 1000))
    const r = await write(file, b1, {resume: true})
    expect(r.archive.resumed.blobs).toBeGreaterThan(2)
    expect(sha(await readFile(file))).toBe(sha(bytes))
    // a flipped byte in a kept member: it and everything after it is written again
    const broken = Buffer.from(bytes.subarray(0, cutIn.offset))
    broken[damage.offset + 100] = broken[damage.offset + 100]! ^ 0xff
    await writeFile(file + '.partial', broken)
    const r2 = await write(file, b1, {resume: true})
    expect(r2.archive.resumed.blobs).toBeLessThan(r.archive.resumed.blobs)
    expect(sha(await readFile(file))).toBe(sha(bytes))
  })

  it('resumes from a partial file whose member has padding that is not zeros: that member is written again', async () => {
    const bytes = await readFile(whole)
    const a = await openArchive(whole)
    const m = [...a.members.values()].find((x) => x.name.startsWith('blobs/') && x.end - x.offset - x.size > 10)!
    await a.close()
    const file = join(dir, 'padding.tar')
    const partial = bytes.subarray(0, bytes.length - 4096)
    await writeFile(file + '.partial', partial)
    const clean = await write(file, b1, {resume: true})
    const broken = Buffer.from(partial)
    broken.fill(0x41, m.offset + m.size, m.end)
    await writeFile(file + '.partial', broken)
    const r = await write(file, b1, {resume: true})
    expect(r.archive.resumed.blobs).toBe(clean.archive.resumed.blobs - 1)
    expect(sha(await readFile(file))).toBe(sha(bytes))
  })

  it('splits into parts that concatenate to the whole archive, reads them, and names a missing part', async () => {
    const size = (await stat(whole)).size
    const base = join(dir, 'split.tar')
    const r = await write(base, b1, {splitSize: Math.ceil(size / 5)})
    expect(r.archive.files.map((f) => f.slice(dir.length + 1))).toEqual(['split.tar.part001', 'split.tar.part002', 'split.tar.part003', 'split.tar.part004', 'split.tar.part005'])
    const joined = Buffer.concat(await Promise.all(r.archive.files.map((f) => readFile(f))))
    expect(sha(joined)).toBe(sha(await readFile(whole)))
    for (const name of [base, `${base}.part001`]) {
      const v = await verifyArchive(name)
      expect(v.ok, name).toBe(true)
    }
    expect(await failure(openArchive(`${base}.part002`))).toMatch(/is part 2 of a split archive: give the first part, .*split\.tar\.part001/)
    const moved = join(dir, 'moved-part')
    await copyFile(`${base}.part003`, moved)
    await rm(`${base}.part003`)
    await expect(openArchive(base)).rejects.toThrow(/split\.tar\.part003 is missing/)
    await copyFile(moved, `${base}.part003`)
    await rm(`${base}.part005`)
    expect(await failure(openArchive(base))).toMatch(/truncated.*no part after .*split\.tar\.part004 is missing/)
  })

  it('names a missing first part as not found, pointing at what an interrupted run left', async () => {
    const missing = join(dir, 'nothere.tar.part001')
    const e = await openArchive(missing).catch((x: unknown) => x)
    expect(isKpiError(e) && e.kind).toBe('not-found')
    expect(formatError(e)).toBe(`archive ${missing} not found: check the path`)
    const base = join(dir, 'unfinished.tar')
    await writeFile(`${base}.part001.partial`, 'x')
    const split = `only an unfinished ${base}.part001.partial exists: finish it with --to-tar ${base} --resume and the --split size it was written with`
    expect(await failure(openArchive(`${base}.part001`))).toBe(`archive ${base}.part001 not found: ${split}`)
    expect(await failure(openArchive(base))).toBe(`archive ${base} not found: ${split}`)
    const single = join(dir, 'unfinished-single.tar')
    await writeFile(`${single}.partial`, 'x')
    expect(await failure(openArchive(single))).toBe(`archive ${single} not found: only an unfinished ${single}.partial exists: finish it with --to-tar ${single} --resume`)
  })

  it('names a part that is a directory, first or later', async () => {
    const first = join(dir, 'partdir1.tar.part001')
    await mkdir(first)
    const hint = 'every part of a split archive is a file kpi relocate --to-tar wrote; copy the parts again'
    const e1 = await openArchive(first).catch((e: unknown) => e)
    expect(isKpiError(e1) && e1.kind).toBe('input')
    expect(formatError(e1)).toBe(`${first} is not an archive file (it is a directory): ${hint}`)
    const size = (await stat(whole)).size
    const base = join(dir, 'partdir2.tar')
    const r = await write(base, b1, {splitSize: Math.ceil(size / 3)})
    await rm(r.archive.files[1]!)
    await mkdir(r.archive.files[1]!)
    expect(await failure(openArchive(base))).toBe(`${base}.part002 is not an archive file (it is a directory): ${hint}`)
    expect(await failure(openArchive(`${base}.part001`))).toBe(`${base}.part002 is not an archive file (it is a directory): ${hint}`)
  })

  it('resumes a split archive to the same parts, and drops partial parts of another split size', async () => {
    const size = (await stat(whole)).size
    const splitSize = Math.ceil(size / 7)
    const file = join(dir, 'split-resume.tar')
    // stale partial parts of an earlier run with another split size
    await writeFile(`${file}.part009.partial`, 'stale')
    const ctl = new AbortController()
    let copied = 0
    await expect(write(file, b1, {splitSize, signal: ctl.signal, onEvent: (e) => {
      if (e.type === 'blob' && e.action === 'copied' && ++copied === 20) ctl.abort()
    }})).rejects.toThrow(/interrupted/)
    const partials = (await readdir(dir)).filter((f) => f.startsWith('split-resume.tar.part') && f.endsWith('.partial'))
    expect(partials.length).toBeGreaterThan(1)
    expect(partials).not.toContain('split-resume.tar.part009.partial')
    const r = await write(file, b1, {splitSize, resume: true})
    expect(r.archive.resumed.blobs).toBeGreaterThanOrEqual(copied)
    const joined = Buffer.concat(await Promise.all(r.archive.files.map((f) => readFile(f))))
    expect(sha(joined)).toBe(sha(await readFile(whole)))
    expect((await readdir(dir)).filter((f) => f.startsWith('split-resume.tar') && f.endsWith('.partial'))).toEqual([])
  })

  it('refuses a target that is a directory, or whose part is, before any blob is copied', async () => {
    const target = join(dir, 'outdir')
    await mkdir(target)
    let copied = 0
    const onEvent = (e: ProgressEvent) => {
      if (e.type === 'blob') copied++
    }
    const isDir = `cannot write archive ${target}: ${target} is a directory: name the archive file to write, e.g. ${join(target, 'bundle.tar')}`
    expect(await failure(write(target, b1, {onEvent}))).toBe(isDir)
    expect(await failure(write(target, b1, {splitSize: 1 << 20, onEvent}))).toBe(isDir)
    const base = join(dir, 'dirpart.tar')
    await mkdir(`${base}.part002`)
    expect(await failure(write(base, b1, {splitSize: 1 << 20, onEvent}))).toBe(`cannot write archive ${base}: ${base}.part002 is a directory: move ${base}.part002 out of the way`)
    expect(copied).toBe(0)
    expect((await readdir(dir)).filter((f) => f.startsWith('outdir') || f.startsWith('dirpart')).sort()).toEqual(['dirpart.tar.part002', 'outdir'])
    expect(await readdir(target)).toEqual([])
  })

  it('writes around the page cache where the file system allows, the same bytes as through it', async () => {
    const direct = await write(join(dir, 'direct.tar'), b1)
    const cached = await write(join(dir, 'cached.tar'), b1, {direct: false})
    expect(direct.archive.direct).toBe(await takesDirectIo(dir))
    expect(cached.archive.direct).toBe(false)
    const want = sha(await readFile(whole))
    expect(sha(await readFile(join(dir, 'direct.tar')))).toBe(want)
    expect(sha(await readFile(join(dir, 'cached.tar')))).toBe(want)
  })

  it('splits at a multiple of 512 around the page cache too, and at any other size through it', async () => {
    const size = (await stat(whole)).size
    const aligned = 512 * Math.ceil(size / 4 / 512)
    const a = await write(join(dir, 'split512.tar'), b1, {splitSize: aligned})
    expect(a.archive.files.length).toBe(4)
    expect(a.archive.direct).toBe(await takesDirectIo(dir))
    const odd = await write(join(dir, 'split-odd.tar'), b1, {splitSize: aligned + 1})
    expect(odd.archive.direct).toBe(false)
    for (const r of [a, odd]) {
      const joined = Buffer.concat(await Promise.all(r.archive.files.map((f) => readFile(f))))
      expect(sha(joined)).toBe(sha(await readFile(whole)))
    }
  })

  it.runIf(existsSync('/dev/shm'))('on tmpfs, which refuses O_DIRECT before Linux 6.6: around the page cache if it takes it, else through it, the same bytes', async () => {
    const shm = await mkdtemp('/dev/shm/kpi-archive-')
    try {
      const r = await write(join(shm, 'v1.tar'), b1)
      expect(r.archive.direct).toBe(await takesDirectIo(shm))
      expect(sha(await readFile(join(shm, 'v1.tar')))).toBe(sha(await readFile(whole)))
    } finally {
      await rm(shm, {recursive: true, force: true})
    }
  })

  it('reads members around the page cache where the file system allows: any range, across parts of any size, the bytes of the file', async () => {
    const size = (await stat(whole)).size
    const bytes = await readFile(whole)
    const odd = await write(join(dir, 'read-odd.tar'), b1, {splitSize: Math.ceil(size / 3) + 7})
    const collect = async (s: NodeJS.ReadableStream, keep: Buffer[] = []) => {
      for await (const c of s) keep.push(c as Buffer)
      return Buffer.concat(keep)
    }
    for (const files of [[whole], odd.archive.files]) {
      const set = await PartSet.open(files)
      try {
        expect(set.isDirect).toBe(await takesDirectIo(dir))
        // unaligned starts and ends, a range over a part boundary, the last byte
        for (const [from, len] of [[0, 1], [513, 70_001], [Math.ceil(size / 3) - 100, 300_000], [size - 1, 1], [1000, size - 2000]] as const) {
          expect((await collect(set.stream(from, len))).equals(bytes.subarray(from, from + len)), `${files.length} files, ${from}+${len}`).toBe(true)
        }
      } finally {
        await set.close()
      }
    }
  })

  it('reads on through the page cache when a consumer keeps every chunk (no aligned memory comes back)', async () => {
    const bytes = await readFile(whole)
    const set = await PartSet.open([whole])
    try {
      // 48 streams of 256 KiB held at once: more than the 8 MiB of aligned memory
      const kept: Buffer[][] = []
      for (let i = 0; i < 48; i++) {
        const from = (i * 4099) % Math.max(1, bytes.length - (256 << 10))
        const got: Buffer[] = []
        for await (const c of set.stream(from, 256 << 10)) got.push(c as Buffer)
        kept.push(got)
        expect(Buffer.concat(got).equals(bytes.subarray(from, from + (256 << 10)))).toBe(true)
      }
      expect(kept.length).toBe(48)
    } finally {
      await set.close()
    }
  })

  it('writes a delta with only what the older version lacks', async () => {
    const file = join(dir, 'delta.tar')
    const r = await write(file, b2, {since: b1})
    const a = await openArchive(file)
    const full = join(dir, 'v2.tar')
    await write(full, b2)
    const f = await openArchive(full)
    try {
      expect(a.toc.since).toEqual({name: b1.bundle.metadata.name, version: b1.bundle.metadata.version})
      const v1Blobs = new Set((await openArchive(whole).then(async (o) => {
        const l = o.toc.blobs.map((b) => b.digest)
        await o.close()
        return l
      })))
      const changed = f.toc.blobs.filter((b) => !v1Blobs.has(b.digest))
      const changedBytes = changed.reduce((s, b) => s + b.size, 0)
      expect(a.toc.blobs.map((b) => b.digest).sort()).toEqual(changed.map((b) => b.digest).sort())
      expect(a.toc.external.length).toBeGreaterThan(0)
      // what else travels grows with the images: each one's manifest and config, its TOC entry, tar headers
      const metadata = 6 * 1024 * bundleImages(b2.bundle).length
      expect(r.archive.bytes).toBeLessThanOrEqual(changedBytes * 1.01 + metadata)
      expect((await verifyArchive(file)).ok).toBe(true)
    } finally {
      await a.close()
      await f.close()
    }
  })
})

describe('reading blobs from an OCI layout', () => {
  it('lets the blob file go when its reader gives up early', async () => {
    // a layout of its own, with one blob far larger than what the streams buffer
    const own = join(dir, 'layout-one-blob')
    const blob = Buffer.alloc(16 << 20, 7)
    const file = join(own, 'blobs/sha256', sha(blob))
    await mkdir(join(own, 'blobs/sha256'), {recursive: true})
    await writeFile(join(own, 'oci-layout'), JSON.stringify({imageLayoutVersion: '1.0.0'}))
    await writeFile(join(own, 'index.json'), JSON.stringify({schemaVersion: 2, manifests: []}))
    await writeFile(file, blob)
    const heldOpen = async () => {
      const fds = await readdir('/proc/self/fd')
      return (await Promise.all(fds.map((fd) => readlink(join('/proc/self/fd', fd)).catch(() => '')))).filter((t) => t === file)
    }
    const {source} = await openOciLayout(own)
    const stream = await source.getBlob({registry: 'r.example', repository: 'a'}, `sha256:${sha(blob)}`, blob.length)
    // one chunk read, then given up: as an upload the registry refused, or a run stopped
    for await (const chunk of stream) {
      expect((chunk as Buffer).length).toBeGreaterThan(0)
      break
    }
    for (const t0 = Date.now(); (await heldOpen()).length > 0 && Date.now() - t0 < 2000;) await new Promise((r) => setTimeout(r, 20))
    expect(await heldOpen()).toEqual([])
  })
})

describe('reading an archive refuses what is wrong before anything is used', () => {
  /** the members of the good archive, re-packed by tar-stream with a change */
  const repack = (name: string, edit: (entries: TarEntry[]) => void): Promise<string> => repackTar(whole, join(dir, name), edit)
  const readToc = (entries: TarEntry[]) => {
    const t = entries.find((e) => e.header.name === 'kpi/toc.json')!
    return {entry: t, toc: JSON.parse(t.data.toString()) as Toc}
  }

  it('accepts the unchanged re-pack (the checks below fail for their own reason)', async () => {
    const file = await repack('same.tar', () => {})
    const a = await openArchive(file)
    await a.close()
  })

  it('a truncated archive', async () => {
    const file = join(dir, 'truncated.tar')
    await copyFile(whole, file)
    await truncate(file, Math.floor((await stat(file)).size / 2))
    await expect(openArchive(file)).rejects.toThrow(/truncated/)
  })

  it('a member with ../', async () => {
    const file = await repack('dotdot.tar', (es) => es.splice(1, 0, {header: {name: '../../etc/evil', size: 4, type: 'file'}, data: Buffer.from('evil')}))
    await expect(openArchive(file)).rejects.toThrow(/"\.\.\/\.\.\/etc\/evil" has a '\.\.' path component/)
  })

  it('an absolute path', async () => {
    const file = await repack('abs.tar', (es) => es.splice(1, 0, {header: {name: '/etc/evil', size: 4, type: 'file'}, data: Buffer.from('evil')}))
    await expect(openArchive(file)).rejects.toThrow(/"\/etc\/evil" has an absolute path/)
  })

  it('a symlink or a hard link', async () => {
    const sym = await repack('symlink.tar', (es) => es.splice(1, 0, {header: {name: 'blobs/sha256/link', type: 'symlink', linkname: '/etc/passwd'}, data: Buffer.alloc(0)}))
    await expect(openArchive(sym)).rejects.toThrow(/blobs\/sha256\/link" -> \/etc\/passwd is a symbolic link/)
    const hard = await repack('hardlink.tar', (es) => es.splice(1, 0, {header: {name: 'x', type: 'link', linkname: 'oci-layout'}, data: Buffer.alloc(0)}))
    await expect(openArchive(hard)).rejects.toThrow(/is a hard link/)
  })

  it('a duplicate member', async () => {
    const file = await repack('dup.tar', (es) => {
      const blob = es.find((e) => e.header.name.startsWith('blobs/'))!
      es.splice(es.length - 1, 0, {header: {...blob.header}, data: Buffer.from('something else')})
    })
    await expect(openArchive(file)).rejects.toThrow(/appears twice/)
  })

  it('an oversized manifest', async () => {
    const file = await repack('bigmanifest.tar', (es) => {
      const {entry, toc} = readToc(es)
      const huge = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', pad: 'x'.repeat(5 * 1024 * 1024)}))
      const digest = `sha256:${sha(huge)}`
      toc.manifests.push({digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: huge.length})
      entry.data = Buffer.from(JSON.stringify(toc))
      entry.header.size = entry.data.length
      es.splice(1, 0, {header: {name: blobMember(digest), size: huge.length, type: 'file'}, data: huge})
    })
    await expect(openArchive(file)).rejects.toThrow(/is \d+ bytes, more than the 4194304 bytes a manifest may have/)
  })

  it('a missing kpi/toc.json or index.json', async () => {
    const noToc = await repack('notoc.tar', (es) => es.splice(es.findIndex((e) => e.header.name === 'kpi/toc.json'), 1))
    await expect(openArchive(noToc)).rejects.toThrow(/has no kpi\/toc\.json/)
    const noIndex = await repack('noindex.tar', (es) => es.splice(es.findIndex((e) => e.header.name === 'index.json'), 1))
    await expect(openArchive(noIndex)).rejects.toThrow(/has no index\.json/)
  })
})

describe('extended headers', () => {
  /** a header block of `type` for `size` bytes of data: fileHeader's block with another type flag */
  const extHeader = (type: string, size: number): Buffer => {
    const b = fileHeader('PaxHeaders/x', size)
    b.write(type, 156)
    b.fill(0x20, 148, 156)
    b.write(b.reduce((a, x) => a + x, 0).toString(8).padStart(6, '0') + '\0 ', 148)
    return b
  }
  const member = (type: string, data: Buffer): Buffer[] => [extHeader(type, data.length), data, Buffer.alloc(paddedSize(data.length) - data.length)]
  const archive = async (name: string, chunks: Buffer[]): Promise<string> => {
    const file = join(dir, name)
    await writeFile(file, Buffer.concat([...chunks, fileHeader('oci-layout', 0), Buffer.alloc(2 * BLOCK)]))
    return file
  }

  it('of several headers before one member are merged: a later one keeps the path of an earlier one', async () => {
    const file = await archive('pax-merged.tar', [
      ...member('x', Buffer.from(paxRecord('path', 'blobs/sha256/merged'))),
      ...member('x', Buffer.from(paxRecord('mtime', '1') + paxRecord('comment', 'x'))),
    ])
    const ps = await PartSet.open([file])
    const scan = await scanTar(ps, file)
    await ps.close()
    expect(scan.members.map((m) => m.name)).toEqual(['blobs/sha256/merged'])
  })

  it('of more than 1 MiB before one member, however they are cut, are refused with the archive and the byte named', async () => {
    // records of distinct keys, just under 1 MiB per header: each one alone is within the limit
    let k = 0
    const big = (): Buffer => {
      const records: string[] = []
      for (let n = 0; n < (1 << 20) - 64;) {
        const r = paxRecord(`k${(k++).toString(36)}`, '')
        records.push(r)
        n += r.length
      }
      return Buffer.from(records.join(''))
    }
    const headers = [big(), big(), big(), big()]
    const file = await archive('pax-many.tar', headers.flatMap((h) => member('x', h)))
    const second = BLOCK + paddedSize(headers[0]!.length)
    const err = await openArchive(file).catch((e: unknown) => e)
    expect(isKpiError(err) && err.kind).toBe('input')
    expect(formatError(err)).toBe(`archive ${file}: extended headers from byte 0 hold ${headers[0]!.length + headers[1]!.length} bytes by the one at byte ${second}, ` +
      'more than the 1048576 one member may have: the archive is damaged or was not written by kpi; get a fresh copy from where it was made')
    // GNU long names count too
    const gnu = await archive('longname-many.tar', [...member('L', Buffer.alloc(700_000, 0x61)), ...member('L', Buffer.alloc(700_000, 0x62))])
    expect(await failure(openArchive(gnu))).toMatch(/extended headers from byte 0 hold 1400000 bytes by the one at byte 700928, more than the 1048576/)
  })
})

describe('verify', () => {
  it('names a damaged blob and the images that use it', async () => {
    const file = join(dir, 'flipped.tar')
    await copyFile(whole, file)
    const a = await openArchive(file)
    const run = a.toc.images.find((i) => i.path === 'stacks[0].runImage')!
    const shared = run.blobs.find((b) => b.size > 20_000 && a.toc.images.filter((i) => i.blobs.some((x) => x.digest === b.digest)).length > 1) ?? run.blobs.find((b) => b.size > 20_000)!
    const m = a.members.get(blobMember(shared.digest))!
    await a.close()
    const f = await open(file, 'r+')
    const byte = Buffer.alloc(1)
    await f.read(byte, 0, 1, m.offset + 500)
    byte[0] = byte[0]! ^ 0x01
    await f.write(byte, 0, 1, m.offset + 500)
    await f.close()
    const v = await verifyArchive(file)
    expect(v.ok).toBe(false)
    expect(v.problems).toHaveLength(1)
    expect(v.problems[0]).toMatchObject({digest: shared.digest, problem: 'damaged'})
    expect(v.problems[0]!.images).toContain('stacks[0].runImage')
  })
})

describe('bundle files', () => {
  it('leave credentials out', () => {
    expect(secretReason('README.txt', Buffer.from('hello'))).toBeUndefined()
    expect(secretReason('values.yaml', Buffer.from('registry:\n  password: hunter2\n'))).toBeDefined()
    expect(secretReason('docker/config.json', Buffer.from('{}'))).toBeDefined()
    expect(secretReason('ca.pem', Buffer.from('-----BEGIN CERTIFICATE-----\n'))).toBeUndefined()
    expect(secretReason('tls.pem', Buffer.from('-----BEGIN RSA PRIVATE KEY-----\n'))).toBeDefined()
    expect(secretReason('auth.json', Buffer.from('{"auths": {"r": {"auth": "eDp5"}}}'))).toBeDefined()
    // kubeconfigs by name, and by their client key wherever they are
    expect(secretReason('kubeconfig', Buffer.from('apiVersion: v1\n'))).toBeDefined()
    expect(secretReason('clusters/admin.conf', Buffer.from('apiVersion: v1\n'))).toBeDefined()
    expect(secretReason('cluster.yaml', Buffer.from('users:\n- name: a\n  user:\n    client-key-data: LS0tLS1CRUdJTg==\n'))).toBeDefined()
    // a secret as the value of a name that ends in one, in YAML or a shell script
    expect(secretReason('deploy.sh', Buffer.from('#!/bin/sh\nexport KPI_REGISTRY_PASSWORD=hunter2\nkpi relocate\n'))).toBeDefined()
    expect(secretReason('values.yaml', Buffer.from('registry:\n  registry_password: x\n'))).toBeDefined()
    expect(secretReason('keys.asc', Buffer.from('-----BEGIN PGP PRIVATE KEY BLOCK-----\n'))).toBeDefined()
    // what only names a credential stays
    expect(secretReason('deploy.sh', Buffer.from('#!/bin/sh\nkpi relocate --password-stdin < /dev/stdin\n'))).toBeUndefined()
    expect(secretReason('values.yaml', Buffer.from('registry:\n  password:\n  server: r.example\n'))).toBeUndefined()
    expect(secretReason('keys.asc', Buffer.from('-----BEGIN PGP PUBLIC KEY BLOCK-----\n'))).toBeUndefined()
  })

  it('whose names the reader refuses are left out with a warning: kpi reads every archive it writes', async () => {
    const bdir = join(dir, 'bundle-names')
    await writeBundleDir(b1.bundle, bdir)
    await writeFile(join(bdir, 'notes\\v1.md'), 'notes\n')
    await writeFile(join(bdir, 'C:notes.md'), 'notes\n')
    await mkdir(join(bdir, 'docs\\old'))
    await writeFile(join(bdir, 'docs\\old', 'a.md'), 'a\n')
    const events: ProgressEvent[] = []
    const file = join(dir, 'names.tar')
    await write(file, await loadBundle(bdir), {onEvent: (e) => events.push(e)})
    const a = await openArchive(file)
    expect(a.bundleFiles.map((f) => f.path)).toEqual(['bundle.yaml', 'README.txt'])
    await a.close()
    expect(events.flatMap((e) => (e.type === 'warning' ? [e.message] : []))).toEqual([
      'bundle file C:notes.md left out of the archive: it has an absolute path, which an archive member may not have',
      'bundle file docs\\old left out of the archive: it has a backslash in its name, which an archive member may not have',
      'bundle file notes\\v1.md left out of the archive: it has a backslash in its name, which an archive member may not have',
    ])
  })

  it('travel in the archive, hidden and secret files left out with a warning', async () => {
    const bdir = join(dir, 'bundle-extra')
    await writeBundleDir(b1.bundle, bdir)
    await writeFile(join(bdir, 'NOTES.md'), 'release notes\n')
    await writeFile(join(bdir, '.dockerconfigjson'), '{"auths":{}}')
    await writeFile(join(bdir, 'values.yaml'), 'password: hunter2\n')
    // a path longer than ustar's 100 + 155 bytes travels in a PAX header
    const deep = join(bdir, 'docs', 'd'.repeat(120), 'e'.repeat(120))
    await mkdir(deep, {recursive: true})
    await writeFile(join(deep, 'notes-on-the-upgrade.md'), 'deep\n')
    const loaded = await loadBundle(bdir)
    const events: ProgressEvent[] = []
    const file = join(dir, 'extra.tar')
    await write(file, loaded, {onEvent: (e) => events.push(e)})
    const a = await openArchive(file)
    const deepPath = `docs/${'d'.repeat(120)}/${'e'.repeat(120)}/notes-on-the-upgrade.md`
    expect(a.bundleFiles.map((f) => f.path)).toEqual(['bundle.yaml', 'NOTES.md', 'README.txt', deepPath])
    expect(a.bundleFiles[3]!.bytes.toString()).toBe('deep\n')
    expect((await run('tar', ['-tf', file])).stdout.split('\n')).toContain(`kpi/bundle/${deepPath}`)
    await a.close()
    const warnings = events.filter((e) => e.type === 'warning').map((e) => (e as {message: string}).message)
    expect(warnings.join('\n')).toMatch(/\.dockerconfigjson left out/)
    expect(warnings.join('\n')).toMatch(/values\.yaml left out/)
    expect((await readFile(file)).includes('hunter2')).toBe(false)
    expect((await readdir(dir)).includes('extra.tar.partial')).toBe(false)
  })
})
