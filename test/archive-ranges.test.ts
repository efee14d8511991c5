/**
 * An archive written from a registry fetches its big blobs as ranges side by side, each straight
 * to its place, hashed by reading back what was written (src/archive/member-write.ts). Against a
 * real registry (Debian's docker-registry) behind a proxy that logs every Range asked for and can
 * play a registry that ignores Range: the archive has the same bytes whichever way each blob came.
 * The failure cases feed writeRanges streams that lie, break or stop, into a real archive file.
 */
import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {relocateFromOciLayout, relocateToArchive} from '../src/archive/actions.js'
import {writeRanges, type OpenRange} from '../src/archive/member-write.js'
import {PartWriter} from '../src/archive/parts.js'
import {openArchive} from '../src/archive/reader.js'
import {verifyArchive} from '../src/archive/verify.js'
import {loadBundle} from '../src/bundle/index.js'
import type {LoadedBundle} from '../src/bundle/types.js'
import {generateSample, writeBundleDir} from '../src/imagegen/index.js'
import {createRegistryClient, type OciClient} from '../src/oci/client.js'
import {isLoopbackRegistry} from '../src/oci/transport.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'
import {startFaultProxy, type FaultProxy} from './helpers/fault-proxy.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
/** splitting from 64 KiB makes the sample's larger layers (up to 320 KiB) come as 4 ranges */
const SPLIT_MIN = 64 << 10

let dir: string
let registry: Registry
let proxy: FaultProxy
let client: OciClient
let bundle: LoadedBundle
let whole: string
/** the blobs of at least SPLIT_MIN bytes in the archive */
let big: Array<{digest: string; size: number}>

/** GETs of a blob through the proxy since the last proxy.set(), with the Range each asked for */
const getsOf = (digest: string) => proxy.log().filter((r) => r.key.startsWith('GET ') && r.key.includes(`/blobs/${digest}`))

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-archive-ranges-'))
  const layout = join(dir, 'layout')
  const v1 = await generateSample({version: 'v1', layoutDir: layout})
  registry = await startRegistry({runDir: dir, name: 'source'})
  proxy = await startFaultProxy(registry.host)
  client = createRegistryClient({plainHttp: isLoopbackRegistry})
  bundle = await loadBundle(await writeBundleDir(v1.bundle(proxy.host, 'sample'), join(dir, 'bundle')))
  await relocateFromOciLayout({bundle, dir: layout, toRepo: proxy.host, client})
  // the reference: every blob as one stream (none is near the default 64 MiB)
  whole = join(dir, 'whole.tar')
  await relocateToArchive({bundle, file: whole, client})
  const a = await openArchive(whole)
  big = a.toc.blobs.filter((b) => b.size >= SPLIT_MIN)
  await a.close()
}, 120_000)

afterAll(async () => {
  await client?.close()
  await proxy?.stop()
  await registry?.stop()
  await rm(dir, {recursive: true, force: true})
})

describe('archive writing fetches big blobs as ranges side by side', () => {
  it('asks for each big blob as contiguous ranges, once each, and writes the same bytes', async () => {
    expect(big.length).toBeGreaterThan(0)
    proxy.set([])
    const file = join(dir, 'ranged.tar')
    await relocateToArchive({bundle, file, client, splitMinBytes: SPLIT_MIN})
    for (const b of big) {
      const ranges = getsOf(b.digest).map((r) => r.range)
      const count = Math.min(4, Math.floor(b.size / (SPLIT_MIN / 2)))
      expect(ranges, b.digest).toHaveLength(count)
      // together the ranges cover the blob exactly: no byte asked for twice, none left out
      const spans = ranges.map((r) => /^bytes=(\d+)-(\d+)$/.exec(r ?? '')!.slice(1).map(Number) as [number, number]).sort((x, y) => x[0] - y[0])
      expect(spans[0]![0]).toBe(0)
      for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBe(spans[i - 1]![1] + 1)
      expect(spans[spans.length - 1]![1]).toBe(b.size - 1)
    }
    // a small blob is one GET, as before
    const a = await openArchive(file)
    const small = a.toc.blobs.find((b) => b.size < SPLIT_MIN / 2)!
    await a.close()
    expect(getsOf(small.digest)).toHaveLength(1)
    expect(sha(await readFile(file))).toBe(sha(await readFile(whole)))
    expect((await verifyArchive(file)).ok).toBe(true)
  })

  it('reads a blob whole from a registry that ignores Range, to the same bytes', async () => {
    proxy.set([])
    proxy.ignoreRange(true)
    try {
      const file = join(dir, 'no-range.tar')
      await relocateToArchive({bundle, file, client, splitMinBytes: SPLIT_MIN})
      for (const b of big) {
        // the first range was answered with the whole blob: dropped, then the blob read as one stream
        expect(getsOf(b.digest).map((r) => r.range !== undefined), b.digest).toEqual([true, false])
      }
      expect(sha(await readFile(file))).toBe(sha(await readFile(whole)))
    } finally {
      proxy.ignoreRange(false)
    }
  })
})

describe('writeRanges, into a real archive file', () => {
  const blob = randomBytes(3 << 20)
  const digest = `sha256:${sha(blob)}`
  const place = {digest, size: blob.length, offset: 512}

  /** ranges of `bytes`, 64 KiB chunks with a pause between them, as a network would give them */
  const serving = (bytes: Buffer, opts: {failAt?: number; opened?: Readable[]} = {}): OpenRange => async (from, to) => {
    let at = from
    const s = new Readable({
      async read() {
        await sleep(1)
        if (opts.failAt !== undefined && at >= opts.failAt && opts.failAt >= from && opts.failAt <= to) return void this.destroy(new Error('connection reset by the test'))
        if (at > to) return void this.push(null)
        const n = Math.min(64 << 10, to + 1 - at)
        this.push(bytes.subarray(at, at + n))
        at += n
      },
    })
    opts.opened?.push(s)
    return s
  }

  const writer = async (name: string) => PartWriter.open(join(dir, name))

  it('writes every range at its place and checks the whole digest', async () => {
    const out = await writer('ok.tar')
    expect(await writeRanges(out, place, serving(blob), {minBytes: 1 << 20})).toBe(true)
    expect((await out.readAt(512, blob.length)).equals(blob)).toBe(true)
    await out.closeAll()
  })

  it('fails with the digest the bytes hash to when a range serves wrong bytes', async () => {
    const lying = Buffer.from(blob)
    lying[lying.length - 10]! ^= 0xff
    const out = await writer('lying.tar')
    await expect(writeRanges(out, place, serving(lying), {minBytes: 1 << 20})).rejects.toThrow(`blob ${digest}: content hashes to sha256:${sha(lying)}, not to its digest`)
    await out.closeAll()
  })

  it('fails with the broken range\'s own error, and stops the others', async () => {
    const opened: Readable[] = []
    const out = await writer('broken.tar')
    await expect(writeRanges(out, place, serving(blob, {failAt: 1 << 20, opened}), {minBytes: 1 << 20})).rejects.toThrow('connection reset by the test')
    expect(opened.length).toBeGreaterThan(1)
    for (const s of opened) expect(s.destroyed).toBe(true)
    await out.closeAll()
  })

  it('fails when a range comes short', async () => {
    const out = await writer('short.tar')
    const short: OpenRange = async (from, to) => serving(blob)(from, to === blob.length - 1 ? to - 100 : to)
    await expect(writeRanges(out, place, short, {minBytes: 1 << 20})).rejects.toThrow(/came \d+ bytes long/)
    await out.closeAll()
  })

  it('writes nothing when the source serves no ranges', async () => {
    const out = await writer('none.tar')
    expect(await writeRanges(out, place, async () => undefined, {minBytes: 1 << 20})).toBe(false)
    expect(await out.readAt(0, 16)).toHaveLength(0)
    await out.closeAll()
  })

  it('stops when its signal is aborted', async () => {
    const ctl = new AbortController()
    const out = await writer('aborted.tar')
    const p = writeRanges(out, place, serving(blob), {minBytes: 1 << 20, signal: ctl.signal})
    setTimeout(() => ctl.abort(), 5)
    await expect(p).rejects.toThrow()
    await out.closeAll()
  })
})
