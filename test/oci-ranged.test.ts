import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, readdir, readlink, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {FAST_WINDOW_BYTES_PER_S, PART_BYTES, partSpool, rangedStream, WINDOW_BYTES} from '../src/oci/ranged.js'

const MiB = 1 << 20

/**
 * bytes of `buf` from `from` to `to` (inclusive) in 64 KiB chunks, `delayMs` apart, the first after
 * `firstMs`, the second after `stallMs` more: a slow network, its round trip, and a stall in the
 * middle of a response (the first byte's wait alone is the registry's time to answer, see
 * rangedStream)
 */
function slow(buf: Buffer, from: number, to: number, delayMs: number, firstMs = 0, stallMs = 0): Readable {
  let at = from
  return new Readable({
    async read() {
      if (at > to) return void this.push(null)
      if (at === from && firstMs) await sleep(firstMs)
      if (at === from + 64 * 1024 && stallMs) await sleep(stallMs)
      if (delayMs) await sleep(delayMs)
      const n = Math.min(64 * 1024, to + 1 - at)
      this.push(buf.subarray(at, at + n))
      at += n
    },
  })
}

/** the first range of a blob, as getBlob asks for it */
const firstEnd = (blob: Buffer) => Math.min(blob.length, WINDOW_BYTES) - 1

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** the spool has all its slots free again (slots go back once their writes have settled) */
async function settled(spool: ReturnType<typeof partSpool>, slots: number): Promise<void> {
  for (let i = 0; i < 100 && spool.free !== slots; i++) await sleep(10)
  expect(spool.free).toBe(slots)
}

/** descriptors of this process open on a spool file (unlinked once open: "(deleted)") */
async function spoolFiles(): Promise<string[]> {
  const out: string[] = []
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '')
    if (target.includes('kpi-parts-')) out.push(target)
  }
  return out
}

async function collect(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

describe('ranged blob download', () => {
  it('splits a blob whose bytes keep the consumer waiting a round trip into parts, and gives every byte back in order', async () => {
    const blob = randomBytes(WINDOW_BYTES + 6 * PART_BYTES + 12345)
    const spool = partSpool(3 * PART_BYTES)
    const asked: Array<[number, number]> = []
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 2, 60), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 1, 60)
    }, spool)
    const got = await collect(s)
    expect(got.length).toBe(blob.length)
    expect(sha(got)).toBe(sha(blob))
    // the consumer waited, so the rest came in parts of PART_BYTES; every byte was asked for once
    expect(asked.filter(([from, to]) => to - from + 1 <= PART_BYTES).length).toBeGreaterThan(1)
    const ranges = [[0, firstEnd(blob)], ...asked].sort((a, b) => a[0]! - b[0]!)
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBe(ranges[i - 1]![1]! + 1)
    expect(ranges[ranges.length - 1]![1]).toBe(blob.length - 1)
    // every part's slot is back, and the spool file is closed
    await settled(spool, 3)
    expect(await spoolFiles()).toEqual([])
  })

  it('reads a blob whose consumer keeps up on the first connection alone', async () => {
    const blob = randomBytes(WINDOW_BYTES + WINDOW_BYTES / 2)
    let fetched = 0
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 0), async (from, to) => {
      fetched++
      return slow(blob, from, to, 0)
    }, partSpool(0))
    expect(sha(await collect(s))).toBe(sha(blob))
    // no budget: the rest is one more window, never parts held ahead
    expect(fetched).toBe(1)
  })

  it('fetches no parts ahead for a consumer that waits only moments (loopback), budget or not', async () => {
    const blob = randomBytes(3 * WINDOW_BYTES + 12345)
    const spool = partSpool(8 * PART_BYTES)
    const asked: Array<[number, number]> = []
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 0), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 0)
    }, spool)
    expect(sha(await collect(s))).toBe(sha(blob))
    // the first window came at once: the rest in one GET; parts held ahead would only cost
    // memory where bytes come at once
    expect(asked).toEqual([[WINDOW_BYTES, blob.length - 1]])
  })

  it('fetches no parts for a blob whose first byte took long but whose bytes then come at once (a busy registry, not a slow path)', async () => {
    const blob = randomBytes(3 * WINDOW_BYTES + 12345)
    const spool = partSpool(8 * PART_BYTES)
    const asked: Array<[number, number]> = []
    // the registry took 60 ms to answer (on loopback, busy with a plan's manifests), then gave everything at once
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 0, 60), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 0)
    }, spool)
    expect(sha(await collect(s))).toBe(sha(blob))
    expect(asked).toEqual([[WINDOW_BYTES, blob.length - 1]])
    expect(spool.free).toBe(8)
  })

  it('asks for the rest of the blob once a window came fast, and keeps windows at WINDOW_BYTES while they do not', async () => {
    /** `blob` read through a ranged stream from a source giving 64 KiB every `delayMs(from)` ms: the ranges asked for */
    const asks = async (blob: Buffer, delayMs: (from: number) => number): Promise<Array<[number, number]>> => {
      const asked: Array<[number, number]> = []
      const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), delayMs(0)), async (from, to) => {
        asked.push([from, to])
        return slow(blob, from, to, delayMs(from))
      }, partSpool(0))
      expect(sha(await collect(s))).toBe(sha(blob))
      return asked
    }
    // 248 MiB coming at once: 8 MiB, then the other 240 in one request
    const big = randomBytes(31 * WINDOW_BYTES)
    expect(await asks(big, () => 0)).toEqual([[WINDOW_BYTES, big.length - 1]])

    // 64 KiB every 5 ms: about 12 MiB/s, a connection over a long path
    expect(64 * 1024 / 0.005).toBeLessThan(FAST_WINDOW_BYTES_PER_S)
    const blob = randomBytes(3 * WINDOW_BYTES + 12345)
    const steady = await asks(blob, () => 5)
    expect(steady).toEqual([[WINDOW_BYTES, 2 * WINDOW_BYTES - 1], [2 * WINDOW_BYTES, 3 * WINDOW_BYTES - 1], [3 * WINDOW_BYTES, blob.length - 1]])

    // slow for the first window, fast from the second on: the rest once the second is in
    const mixed = await asks(blob, (from) => (from < WINDOW_BYTES ? 5 : 0))
    expect(mixed).toEqual([[WINDOW_BYTES, 2 * WINDOW_BYTES - 1], [2 * WINDOW_BYTES, blob.length - 1]])
  })

  it('asks for the next window once the current one is in, before the consumer has read it', async () => {
    const blob = randomBytes(2 * WINDOW_BYTES + 12345)
    const asked: Array<[number, number]> = []
    // the first window arrives whole at once; nothing reads yet
    const s = rangedStream(blob.length, Readable.from([blob.subarray(0, WINDOW_BYTES)]), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 0)
    }, partSpool(0))
    await sleep(50)
    // a consumer that keeps up finds the next window already on its way: no round trip at the
    // seam; that window holds no more than HIGH_WATER unread, so it is not in yet either
    // (the first came at once: the rest of this blob)
    expect(asked).toEqual([[WINDOW_BYTES, blob.length - 1]])
    expect(sha(await collect(s))).toBe(sha(blob))
    expect(asked).toEqual([[WINDOW_BYTES, blob.length - 1]])
  })

  it('fails when a part ends short, and frees its slots', async () => {
    const blob = randomBytes(WINDOW_BYTES + 4 * PART_BYTES)
    const spool = partSpool(2 * PART_BYTES)
    let asked = 0
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 3, 0, 60), async (from, to) => {
      asked++
      return slow(blob, from, to - 100, 0)
    }, spool)
    await expect(collect(s)).rejects.toThrow(/ended after/)
    // parts were asked for (slots were taken), and all are back
    expect(asked).toBeGreaterThan(1)
    await settled(spool, 2)
  })

  it('frees the slots when the consumer stops early', async () => {
    const blob = randomBytes(WINDOW_BYTES + 8 * MiB)
    const spool = partSpool(2 * PART_BYTES)
    let asked = 0
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 2, 0, 60), async (from, to) => {
      asked++
      return slow(blob, from, to, 5)
    }, spool)
    let n = 0
    for await (const c of s) {
      n += (c as Buffer).length
      if (n > WINDOW_BYTES + MiB) break
    }
    expect(asked).toBeGreaterThan(1)
    await settled(spool, 2)
  })

  it('keeps parts ahead in an unlinked temporary file while they wait, not in memory', async () => {
    const blob = randomBytes(WINDOW_BYTES + 6 * PART_BYTES + 777)
    const dir = await mkdtemp(join(tmpdir(), 'kpi-spool-'))
    const spool = partSpool(4 * PART_BYTES, dir)
    // parts come at once; the consumer is slow to reach them, so they wait in their slots
    let sawFile: string[] = []
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 2, 0, 60), async (from, to) => slow(blob, from, to, 0), spool)
    const chunks: Buffer[] = []
    for await (const c of s) {
      chunks.push(Buffer.from(c as Buffer))
      if (spool.free < 4 && sawFile.length === 0) sawFile = await spoolFiles()
    }
    expect(sha(Buffer.concat(chunks))).toBe(sha(blob))
    // the file was open, under the directory given, with no name left in it
    expect(sawFile.length).toBe(1)
    expect(sawFile[0]).toMatch(new RegExp(`^${dir}/kpi-parts-.* \\(deleted\\)$`))
    expect(await readdir(dir)).toEqual([])
    await settled(spool, 4)
    expect(await spoolFiles()).toEqual([])
    await rm(dir, {recursive: true, force: true})
  })

  it('fails with a KpiError naming the spool and TMPDIR when parts cannot be kept', async () => {
    const blob = randomBytes(WINDOW_BYTES + 4 * PART_BYTES)
    const dir = join(tmpdir(), `kpi-spool-missing-${process.pid}`)
    const spool = partSpool(2 * PART_BYTES, dir)
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 3, 0, 60), async (from, to) => slow(blob, from, to, 0), spool)
    const err = await collect(s).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).message).toContain(`keeping parts of a blob in ${dir}/kpi-parts-`)
    expect((err as KpiError).hint).toContain('TMPDIR')
    await settled(spool, 2)
  })
})
