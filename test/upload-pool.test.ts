import {setImmediate as tick} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {SMALL_BLOB_BYTES, uploadPool} from '../src/relocate/upload-pool.js'

const MiB = 1 << 20

/** Tasks that run until released, recording which ran side by side. */
function harness() {
  const running = new Set<string>()
  const started: string[] = []
  const peaks: Array<string[]> = []
  const release = new Map<string, () => void>()
  const task = (name: string) => () => new Promise<string>((resolve) => {
    running.add(name)
    started.push(name)
    peaks.push([...running].sort())
    release.set(name, () => {
      running.delete(name)
      resolve(name)
    })
  })
  const finish = async (name: string) => {
    release.get(name)!()
    await tick()
  }
  return {running, started, peaks, task, finish}
}

describe('upload pool', () => {
  it('runs at most n blobs, the largest waiting first', async () => {
    const h = harness()
    const pool = uploadPool(2)
    const sizes = {a: 2, b: 3, c: 9, d: 5, e: 10}
    const done = Object.entries(sizes).map(([name, mib]) => pool(mib * MiB, h.task(name)))
    await tick()
    // a and b came first and started; the rest wait, then go largest first
    expect(h.started).toEqual(['a', 'b'])
    await h.finish('a')
    await h.finish('b')
    expect(h.started).toEqual(['a', 'b', 'e', 'c'])
    await h.finish('e')
    await h.finish('c')
    await h.finish('d')
    expect(h.started).toEqual(['a', 'b', 'e', 'c', 'd'])
    expect(Math.max(...h.peaks.map((p) => p.length))).toBe(2)
    expect(await Promise.all(done)).toEqual(['a', 'b', 'c', 'd', 'e'])
  })

  it('with gather, starts the largest of the blobs given in one turn first', async () => {
    const h = harness()
    const pool = uploadPool(2, {gather: true})
    const done = [3, 9, 5, 7].map((mib, i) => pool(mib * MiB, h.task(`g${i}`)))
    await tick()
    await tick()
    expect([...h.running].sort()).toEqual(['g1', 'g3'])
    for (const n of ['g1', 'g3', 'g2', 'g0']) await h.finish(n)
    expect(h.started).toEqual(['g1', 'g3', 'g2', 'g0'])
    await Promise.all(done)
  })

  it('gives small blobs a lane of their own, so they do not wait behind big ones', async () => {
    const h = harness()
    const pool = uploadPool(2)
    const done = [pool(50 * MiB, h.task('big1')), pool(40 * MiB, h.task('big2')), pool(30 * MiB, h.task('big3'))]
    const small = Array.from({length: 3}, (_, i) => pool(SMALL_BLOB_BYTES - 1, h.task(`s${i}`)))
    await tick()
    // two small ones run now, beside the big ones; the third big one waits
    expect([...h.running].sort()).toEqual(['big1', 'big2', 's0', 's1'])
    await h.finish('s0')
    expect(h.running.has('s2')).toBe(true)
    for (const n of ['s1', 's2', 'big1', 'big2', 'big3']) await h.finish(n)
    await Promise.all([...done, ...small])
  })

  it('starts with fewer layers when told, and widens to a width up to n, small blobs unaffected', async () => {
    const h = harness()
    const pool = uploadPool(3, {start: 1})
    const big = [50, 40, 30, 20].map((mib, i) => pool(mib * MiB, h.task(`b${i}`)))
    const small = [0, 1].map((i) => pool(1024, h.task(`s${i}`)))
    await tick()
    expect([...h.running].sort()).toEqual(['b0', 's0', 's1'])
    const lane = () => ({running: pool.layers.running, waiting: pool.layers.waiting, width: pool.layers.width})
    expect(lane()).toEqual({running: 1, waiting: 3, width: 1})
    pool.widenTo(2)
    expect([...h.running].sort()).toEqual(['b0', 'b1', 's0', 's1'])
    // never narrower than it is
    pool.widenTo(1)
    expect(lane()).toEqual({running: 2, waiting: 2, width: 2})
    pool.widenTo(5)
    // never past n
    expect(lane()).toEqual({running: 3, waiting: 1, width: 3})
    for (const n of ['s0', 's1', 'b0', 'b1', 'b2', 'b3']) await h.finish(n)
    expect(Math.max(...h.peaks.map((p) => p.filter((x) => x.startsWith('b')).length))).toBe(3)
    await Promise.all([...big, ...small])
  })

  it('keeps the given order when not ordered by size', async () => {
    const h = harness()
    const pool = uploadPool(1, {bySize: false})
    const done = [2, 9, 5].map((mib, i) => pool(mib * MiB, h.task(`x${i}`)))
    await tick()
    for (const n of ['x0', 'x1', 'x2']) await h.finish(n)
    expect(h.started).toEqual(['x0', 'x1', 'x2'])
    await Promise.all(done)
  })
})
