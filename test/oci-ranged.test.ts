import {createHash, randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {ByteBudget, PART_BYTES, rangedStream} from '../src/oci/ranged.js'

const MiB = 1 << 20

/** bytes of `buf` from `from` to `to` (inclusive) in 64 KiB chunks, `delayMs` apart: a slow network */
function slow(buf: Buffer, from: number, to: number, delayMs: number): Readable {
  let at = from
  return new Readable({
    async read() {
      if (at > to) return void this.push(null)
      if (delayMs) await sleep(delayMs)
      const n = Math.min(64 * 1024, to + 1 - at)
      this.push(buf.subarray(at, at + n))
      at += n
    },
  })
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function collect(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

describe('ranged blob download', () => {
  it('splits a blob the consumer waits for into parts, and gives every byte back in order', async () => {
    const blob = randomBytes(6 * PART_BYTES + 12345)
    const budget = new ByteBudget(3 * PART_BYTES)
    const asked: Array<[number, number]> = []
    const s = rangedStream(blob.length, slow(blob, 0, blob.length - 1, 2), async (from, to) => {
      asked.push([from, to])
      return slow(blob, from, to, 1)
    }, budget)
    const got = await collect(s)
    expect(got.length).toBe(blob.length)
    expect(sha(got)).toBe(sha(blob))
    // the consumer waited, so the rest came in parts of at most PART_BYTES (a connection reading
    // to the end is cut where the first part begins), each within the blob
    expect(asked.length).toBeGreaterThan(1)
    expect(asked.filter(([from, to]) => to - from + 1 <= PART_BYTES).length).toBeGreaterThan(0)
    for (const [from, to] of asked) expect(0 <= from && from <= to && to < blob.length).toBe(true)
    // every part's share of the budget is back
    expect(budget.tryTake(3 * PART_BYTES)).toBe(true)
  })

  it('reads a blob whose consumer keeps up on the first connection alone', async () => {
    const blob = randomBytes(3 * PART_BYTES)
    let fetched = 0
    const s = rangedStream(blob.length, slow(blob, 0, blob.length - 1, 0), async (from, to) => {
      fetched++
      return slow(blob, from, to, 0)
    }, new ByteBudget(0))
    expect(sha(await collect(s))).toBe(sha(blob))
    // no budget: whatever was split comes one part after another, never held ahead
    expect(fetched).toBeLessThanOrEqual(1)
  })

  it('fails when a part ends short, and frees the budget', async () => {
    const blob = randomBytes(4 * PART_BYTES)
    const budget = new ByteBudget(2 * PART_BYTES)
    const s = rangedStream(blob.length, slow(blob, 0, blob.length - 1, 3), async (from, to) => slow(blob, from, to - 100, 0), budget)
    await expect(collect(s)).rejects.toThrow(/ended after/)
    expect(budget.tryTake(2 * PART_BYTES)).toBe(true)
  })

  it('frees the budget when the consumer stops early', async () => {
    const blob = randomBytes(8 * MiB)
    const budget = new ByteBudget(2 * PART_BYTES)
    const s = rangedStream(blob.length, slow(blob, 0, blob.length - 1, 2), async (from, to) => slow(blob, from, to, 5), budget)
    let n = 0
    for await (const c of s) {
      n += (c as Buffer).length
      if (n > MiB) break
    }
    expect(budget.tryTake(2 * PART_BYTES)).toBe(true)
  })
})
