/**
 * The archive writer (src/archive/writer.ts) checks every blob's bytes against its digest as it
 * writes them: a blob whose bytes do not match is refused, named, and never counts as written,
 * while the blobs around it are kept for --resume.
 */
import {createHash, randomBytes} from 'node:crypto'
import {execFile} from 'node:child_process'
import {mkdir, mkdtemp, readdir, readFile, readlink, rm, statfs, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {promisify} from 'node:util'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {createRegistryClient} from '../src/oci/client.js'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {PartWriter} from '../src/archive/parts.js'
import {takesDirectIo} from './helpers/direct-io.js'
import {createArchiveSink, writersWanted} from '../src/archive/writer.js'
import {formatError, isKpiError, KpiError} from '../src/errors.js'
import {handOut, takeBuffer} from '../src/oci/index.js'
import {poolCounts} from '../src/oci/buffer-pool.js'

const run = promisify(execFile)
const digest = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** `bytes` as chunks of the process's pool, as the wire and the archive reader hand them out */
function pooledChunks(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let at = 0; at < bytes.length; at += size) {
    const slab = takeBuffer(256 * 1024)
    const n = Math.min(size, bytes.length - at)
    bytes.copy(slab, 0, at, at + n)
    const view = slab.subarray(0, n)
    handOut(view, slab)
    out.push(view)
  }
  return out
}

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-archive-writer-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('the archive writer checking digests', () => {
  const sink = (file: string, blobs: Buffer[]) => createArchiveSink(file, {order: blobs.map((b) => ({digest: digest(b), size: b.length}))})

  it('writes blobs whose bytes match, giving their buffers back, and refuses one whose bytes do not: named, never counted as written', async () => {
    const good = randomBytes(2 * 1024 * 1024 + 3)
    const bad = randomBytes(1024 * 1024)
    const file = join(dir, 'refuse.tar')
    const s = await sink(file, [good, bad])
    const before = poolCounts()
    await s.putBlob({registry: 'r.example', repository: 'a'}, digest(good), good.length, async () => Readable.from(pooledChunks(good, 70_000)))
    // written and hashed, every pooled chunk went back: its buffers are read into again
    const pooled = poolCounts().allocated - before.allocated
    pooledChunks(Buffer.alloc(pooled * 70_000), 70_000)
    expect(poolCounts().reused - before.reused).toBe(pooled)
    const wrong = Buffer.from(bad)
    wrong[500_000] = wrong[500_000]! ^ 0xff
    const err = await s.putBlob({registry: 'r.example', repository: 'a'}, digest(bad), bad.length, async () => Readable.from([wrong])).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).kind).toBe('integrity')
    expect((err as KpiError).message).toContain(`blob ${digest(bad)}: content hashes to ${digest(wrong)}`)
    expect([...s.written.keys()]).toEqual([digest(good)])
    expect(await s.hasBlob({registry: 'r.example', repository: 'a'}, digest(bad))).toBe(false)
    // the blob written is read back whole; the archive stays partial, for --resume
    expect((await s.readBlob(digest(good), good.length))?.equals(good)).toBe(true)
    await s.abort()
    expect((await readdir(dir)).filter((f) => f.startsWith('refuse'))).toEqual(['refuse.tar.partial'])
  })
})

describe('the archive writer and a source registry that drops the connection mid-blob', () => {
  it('writes the blob again from a fresh download, as an upload to a registry is restarted', async () => {
    const blob = randomBytes(3 << 20)
    let gets = 0
    // a registry (on loopback, plain HTTP) that resets the first download of the blob half-way
    const server = createServer((req, res) => {
      if (req.url === '/v2/') return void res.writeHead(200).end()
      if (req.method !== 'GET' || req.url !== `/v2/app/blobs/${digest(blob)}`) return void res.writeHead(404).end()
      res.writeHead(200, {'content-length': String(blob.length), 'content-type': 'application/octet-stream'})
      if (++gets > 1) return void res.end(blob)
      res.write(blob.subarray(0, 1 << 20), () => setTimeout(() => req.socket.destroy(), 20))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const client = createRegistryClient({credentials: async () => undefined, retryPolicy: {baseMs: 5, maxMs: 50}})
    const repo = {registry: `127.0.0.1:${(server.address() as AddressInfo).port}`, repository: 'app'}
    const s = await createArchiveSink(join(dir, 'reset.tar'), {order: [{digest: digest(blob), size: blob.length}]})
    try {
      await s.putBlob(repo, digest(blob), blob.length, () => client.getBlob(repo, digest(blob), blob.length, {verify: false}))
      expect(gets).toBe(2)
      expect([...s.written.keys()]).toEqual([digest(blob)])
      expect((await s.readBlob(digest(blob), blob.length))?.equals(blob)).toBe(true)
    } finally {
      await s.abort()
      await client.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})

describe('the archive writer and a source that fails before its first byte is written', () => {
  it('keeps the failure for its retry while the blob\'s header waits for its file, and writes the blob again', async () => {
    const blob = randomBytes(64 * 1024)
    let opens = 0
    // split small, the blob's member is the first write into a part of its own: its header waits
    // for that file to open, and the source fails meanwhile with nothing reading it yet
    const s = await createArchiveSink(join(dir, 'early.tar'), {order: [{digest: digest(blob), size: blob.length}], splitSize: 1024, direct: false})
    try {
      await s.putBlob({registry: 'r.example', repository: 'a'}, digest(blob), blob.length, async () => {
        if (++opens > 1) return Readable.from([blob])
        // failed as it opens: its 'error' comes once the writer waits for real I/O
        return new Readable({read() {}}).destroy(Object.assign(new Error('socket hang up'), {code: 'ECONNRESET'}))
      })
      expect(opens).toBe(2)
      expect((await s.readBlob(digest(blob), blob.length))?.equals(blob)).toBe(true)
    } finally {
      await s.abort()
    }
  })
})

describe('the archive writer on a full file system', () => {
  // a file system of its own, so that it fills up for real: 8 MiB of tmpfs
  let small: string
  beforeAll(async () => {
    small = join(dir, 'small')
    await mkdir(small)
    await run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', small])
  })
  afterAll(async () => {
    // lazily: a file left open by a failed test must not leave the mount behind
    await run('umount', ['--lazy', small])
  })
  /** files under `where` this process holds open */
  const openFiles = async (where: string) => {
    const fds = await readdir('/proc/self/fd')
    const targets = await Promise.all(fds.map((fd) => readlink(join('/proc/self/fd', fd)).catch(() => '')))
    return targets.filter((t) => t.startsWith(where + '/'))
  }

  it('names the archive and what was being written, says to free space, closes its files, and resumes once there is room', async () => {
    const repo = {registry: 'r.example', repository: 'a'}
    const blob = randomBytes(3 << 20)
    const order = [{digest: digest(blob), size: blob.length}]
    const file = join(small, 'full.tar')
    const s = await createArchiveSink(file, {order})
    await s.putBlob(repo, digest(blob), blob.length, async () => Readable.from([blob]))
    // what is left of the file system but 64 KiB taken: a toc of 1 MiB does not fit
    const {bavail, bsize} = await statfs(small)
    const filler = join(small, 'filler')
    await writeFile(filler, Buffer.alloc(bavail * bsize - (64 << 10)))
    const content = {manifests: [], index: Buffer.from('{}'), files: [], toc: Buffer.alloc(1 << 20, 0x20)}
    const err = await s.finish(content).catch((e: unknown) => e)
    expect(isKpiError(err) && err.kind).toBe('failed')
    expect(formatError(err)).toBe(`writing the manifests, index.json, bundle files and kpi/toc.json to ${file}: ENOSPC: no space left on device, write: ` +
      'free space, then run again with --resume: the blobs written are kept')
    await s.abort()
    expect(await openFiles(small)).toEqual([])
    expect((await readdir(small)).sort()).toEqual(['filler', 'full.tar.partial'])

    await rm(filler)
    const again = await createArchiveSink(file, {order, resume: true})
    expect(again.resumed).toEqual({blobs: 1, bytes: blob.length})
    const info = await again.finish(content)
    expect(info.files).toEqual([file])
    expect(await openFiles(small)).toEqual([])
    expect((await readFile(file)).includes(blob)).toBe(true)
  })
})

describe('the archive writer\'s pace', () => {
  const repo = {registry: 'r.example', repository: 'a'}
  const content = {manifests: [], index: Buffer.from('{}'), files: [], toc: Buffer.from('{}')}

  /** `layers` written through one sink, each read from `source`: the most read at once, and what the sink says */
  async function write(name: string, layers: Buffer[], source: (b: Buffer) => Readable, concurrency?: number) {
    const s = await createArchiveSink(join(dir, name), {order: layers.map((b) => ({digest: digest(b), size: b.length})), concurrency})
    let open = 0
    let most = 0
    await Promise.all(layers.map((b) => s.putBlob(repo, digest(b), b.length, async () => {
      most = Math.max(most, ++open)
      return source(b).once('end', () => open--)
    })))
    const info = await s.finish(content)
    return {most, info, written: s.written.size}
  }

  /** 64 KiB every `ms`: a capped connection over a long path */
  const trickle = (b: Buffer, ms: number) => Readable.from((async function* () {
    for (let at = 0; at < b.length; at += 64 * 1024) {
      await new Promise((r) => setTimeout(r, ms))
      yield b.subarray(at, at + 64 * 1024)
    }
  })())

  it('runs every writer the concurrency allows once every writer is busy, layers wait, and each brought less than 32 MiB/s', () => {
    const MiB = 1024 * 1024
    const busy = {running: 4, waiting: 3, width: 4, most: 8, ms: 250}
    // 4 writers, 250 ms: 32 MiB/s each is 32 MiB in all; a slow source gets all 8 at once
    expect(writersWanted({...busy, bytes: 32 * MiB - 1})).toBe(8)
    expect(writersWanted({...busy, bytes: 32 * MiB})).toBe(4)
    expect(writersWanted({...busy, bytes: 0})).toBe(8)
    // a writer idle, or nothing waiting: more would not help
    expect(writersWanted({...busy, running: 3, bytes: 0})).toBe(4)
    expect(writersWanted({...busy, waiting: 0, bytes: 0})).toBe(4)
    // loopback: 4 writers at 100-200 MiB/s each
    expect(writersWanted({...busy, bytes: 4 * 100 * MiB / 4})).toBe(4)
    // never fewer than run already
    expect(writersWanted({...busy, width: 6, running: 6, most: 4, bytes: 0})).toBe(6)
  })

  it('writes 4 layers at once to begin with, and says so', async () => {
    const layers = Array.from({length: 6}, () => randomBytes(2 * 1024 * 1024))
    const r = await write('pace-fast.tar', layers, (b) => Readable.from([b]))
    expect(r.written).toBe(6)
    expect(r.most).toBeLessThanOrEqual(4)
    expect(r.info.writers).toBe(4)
  })

  it('adds writers while each brings less than 32 MiB/s, up to the concurrency given', async () => {
    // about 3 MiB/s each: 2 MiB take 0.6 s, and every 250 ms all are busy with layers waiting
    const layers = Array.from({length: 14}, () => randomBytes(2 * 1024 * 1024))
    const r = await write('pace-slow.tar', layers, (b) => trickle(b, 20), 6)
    expect(r.written).toBe(14)
    expect(r.info.writers).toBe(6)
    expect(r.most).toBe(6)
  })
})

describe('the part writer', () => {
  it('through the page cache (a split size not a multiple of 512): runs of buffers of any size, across part boundaries, byte for byte', async () => {
    const file = join(dir, 'parts.tar')
    // sizes around the 32 KiB a single write carries, an empty buffer among them
    const bufs = [70_001, 0, 33_000, 32 * 1024, 1, 150_000].map((n) => randomBytes(n))
    const whole = Buffer.concat([Buffer.alloc(12_345, 7), ...bufs])
    const out = await PartWriter.open(file, {splitSize: 100_000})
    const seq = out.sequence(0)
    await seq.write([Buffer.alloc(12_345, 7)])
    await seq.write(bufs)
    await seq.end()
    expect(out.isDirect).toBe(false)
    const total = 512 * Math.ceil(whole.length / 512)
    const files = await out.complete(total)
    expect(files.length).toBe(Math.ceil(total / 100_000))
    const got = Buffer.concat(await Promise.all(files.map((f) => readFile(f))))
    expect(got.length).toBe(total)
    expect(got.subarray(0, whole.length).equals(whole)).toBe(true)
    expect(got.subarray(whole.length).equals(Buffer.alloc(total - whole.length))).toBe(true)
  })

  it('writes sequences of buffers in order from 512-aligned starts, padded with zeros to 512, across parts, around the page cache where it can', async () => {
    const file = join(dir, 'seq.tar')
    const out = await PartWriter.open(file, {splitSize: 512 * 300})
    // two sequences side by side, each longer than a slab, with sizes that leave a partial block
    const a = [70_001, 0, 1 << 20, 33_000, 1].map((n) => randomBytes(n))
    const b = [1 << 20, 5, 300_000].map((n) => randomBytes(n))
    const lenA = a.reduce((x, y) => x + y.length, 0)
    const padA = 512 * Math.ceil(lenA / 512)
    const sa = out.sequence(0)
    const sb = out.sequence(padA)
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (a[i]) await sa.write([a[i]!])
      if (b[i]) await sb.write([b[i]!])
    }
    await Promise.all([sa.end(), sb.end()])
    expect(out.isDirect).toBe(await takesDirectIo(dir))
    const lenB = b.reduce((x, y) => x + y.length, 0)
    const total = padA + 512 * Math.ceil(lenB / 512)
    const files = await out.complete(total)
    const got = Buffer.concat(await Promise.all(files.map((f) => readFile(f))))
    const want = Buffer.alloc(total)
    Buffer.concat(a).copy(want, 0)
    Buffer.concat(b).copy(want, padA)
    expect(got.length).toBe(total)
    expect(got.equals(want)).toBe(true)
  })
})
