import {createHash, randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {ByteBudget, PART_BYTES, rangedStream, WINDOW_BYTES} from '../src/oci/ranged.js'

const MiB = 1 << 20

/**
 * bytes of `buf` from `from` to `to` (inclusive) in 64 KiB chunks, `delayMs` apart, the first after
 * `firstMs`: a slow network, and its round trip
 */
function slow(buf: Buffer, from: number, to: number, delayMs: number, firstMs = 0): Readable {
  let at = from
  return new Readable({
    async read() {
      if (at > to) return void this.push(null)
      if (at === from && firstMs) await sleep(firstMs)
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

async function collect(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

describe('ranged blob download', () => {
  it('splits a blob whose bytes keep the consumer waiting a round trip into parts, and gives every byte back in order', async () => {
    const blob = randomBytes(WINDOW_BYTES + 6 * PART_BYTES + 12345)
    const budget = new ByteBudget(3 * PART_BYTES)
    const asked: Array<[number, number]> = []
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 2, 60), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 1, 60)
    }, budget)
    const got = await collect(s)
    expect(got.length).toBe(blob.length)
    expect(sha(got)).toBe(sha(blob))
    // the consumer waited, so the rest came in parts of PART_BYTES; every byte was asked for once
    expect(asked.filter(([from, to]) => to - from + 1 <= PART_BYTES).length).toBeGreaterThan(1)
    const ranges = [[0, firstEnd(blob)], ...asked].sort((a, b) => a[0]! - b[0]!)
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBe(ranges[i - 1]![1]! + 1)
    expect(ranges[ranges.length - 1]![1]).toBe(blob.length - 1)
    // every part's share of the budget is back
    expect(budget.tryTake(3 * PART_BYTES)).toBe(true)
  })

  it('reads a blob whose consumer keeps up on the first connection alone', async () => {
    const blob = randomBytes(WINDOW_BYTES + WINDOW_BYTES / 2)
    let fetched = 0
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 0), async (from, to) => {
      fetched++
      return slow(blob, from, to, 0)
    }, new ByteBudget(0))
    expect(sha(await collect(s))).toBe(sha(blob))
    // no budget: the rest is one more window, never parts held ahead
    expect(fetched).toBe(1)
  })

  it('fetches no parts ahead for a consumer that waits only moments (loopback), budget or not', async () => {
    const blob = randomBytes(3 * WINDOW_BYTES + 12345)
    const budget = new ByteBudget(8 * PART_BYTES)
    const asked: Array<[number, number]> = []
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 0), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 0)
    }, budget)
    expect(sha(await collect(s))).toBe(sha(blob))
    // window after window: parts held ahead would only cost memory where bytes come at once
    expect(asked).toEqual([[WINDOW_BYTES, 2 * WINDOW_BYTES - 1], [2 * WINDOW_BYTES, 3 * WINDOW_BYTES - 1], [3 * WINDOW_BYTES, blob.length - 1]])
  })

  it('asks for the next window once the current one is in, before the consumer has read it', async () => {
    const blob = randomBytes(2 * WINDOW_BYTES + 12345)
    const asked: Array<[number, number]> = []
    // the first window arrives whole at once; nothing reads yet
    const s = rangedStream(blob.length, Readable.from([blob.subarray(0, WINDOW_BYTES)]), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 0)
    }, new ByteBudget(0))
    await sleep(50)
    // a consumer that keeps up finds the next window already on its way: no round trip at the
    // seam; that window holds no more than HIGH_WATER unread, so it is not in yet either
    expect(asked).toEqual([[WINDOW_BYTES, 2 * WINDOW_BYTES - 1]])
    expect(sha(await collect(s))).toBe(sha(blob))
    expect(asked).toEqual([[WINDOW_BYTES, 2 * WINDOW_BYTES - 1], [2 * WINDOW_BYTES, blob.length - 1]])
  })

  it('fails when a part ends short, and frees the budget', async () => {
    const blob = randomBytes(WINDOW_BYTES + 4 * PART_BYTES)
    const budget = new ByteBudget(2 * PART_BYTES)
    let asked = 0
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 3, 60), async (from, to) => {
      asked++
      return slow(blob, from, to - 100, 0)
    }, budget)
    await expect(collect(s)).rejects.toThrow(/ended after/)
    // parts were asked for (the budget was taken), and it is all back
    expect(asked).toBeGreaterThan(1)
    expect(budget.tryTake(2 * PART_BYTES)).toBe(true)
  })

  it('frees the budget when the consumer stops early', async () => {
    const blob = randomBytes(WINDOW_BYTES + 8 * MiB)
    const budget = new ByteBudget(2 * PART_BYTES)
    let asked = 0
    const s = rangedStream(blob.length, slow(blob, 0, firstEnd(blob), 2, 60), async (from, to) => {
      asked++
      return slow(blob, from, to, 5)
    }, budget)
    let n = 0
    for await (const c of s) {
      n += (c as Buffer).length
      if (n > WINDOW_BYTES + MiB) break
    }
    expect(asked).toBeGreaterThan(1)
    expect(budget.tryTake(2 * PART_BYTES)).toBe(true)
  })
})
