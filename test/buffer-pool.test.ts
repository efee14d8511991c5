import {describe, expect, it} from 'vitest'
import {doneWith, handOut, isPooled, lend, recycle, takeBuffer} from '../src/oci/buffer-pool.js'

// Sizes no other code in this process takes, so the free list seen here is this test's alone.
let size = 40_961
const fresh = (): number => size++

/** a fresh buffer of `n` bytes with two views of it handed out */
const withTwoViews = (n: number): {buf: Buffer; a: Buffer; b: Buffer} => {
  const buf = takeBuffer(n)
  const a = buf.subarray(0, 10)
  const b = buf.subarray(10, 20)
  handOut(a, buf)
  handOut(b, buf)
  return {buf, a, b}
}

describe('buffer pool: a buffer is read into again only once every view handed out is given back', () => {
  it('keeps a buffer until its last view comes back, then gives it out again', () => {
    const n = fresh()
    const {buf, a, b} = withTwoViews(n)
    expect(isPooled(a)).toBe(true)
    doneWith(a)
    expect(isPooled(a)).toBe(false)
    // one view still out: the buffer is not free
    expect(takeBuffer(n)).not.toBe(buf)
    doneWith(b)
    expect(takeBuffer(n)).toBe(buf)
  })

  it('counts a view given back twice once', () => {
    const n = fresh()
    const {buf, a} = withTwoViews(n)
    doneWith(a)
    doneWith(a)
    expect(takeBuffer(n)).not.toBe(buf)
  })

  it('never gives back a view made from a handed-out view (a consumer may keep it)', () => {
    const n = fresh()
    const buf = takeBuffer(n)
    const a = buf.subarray(0, 10)
    handOut(a, buf)
    const part = a.subarray(2, 4)
    expect(isPooled(part)).toBe(false)
    doneWith(part)
    expect(takeBuffer(n)).not.toBe(buf)
    doneWith(a)
    expect(takeBuffer(n)).toBe(buf)
  })

  it('takes back at once a buffer none of which was handed out, and not one that has views out', () => {
    const n = fresh()
    const idle = takeBuffer(n)
    recycle(idle)
    expect(takeBuffer(n)).toBe(idle)
    const busy = takeBuffer(n)
    handOut(busy.subarray(0, 1), busy)
    recycle(busy)
    expect(takeBuffer(n)).not.toBe(busy)
  })

  it('runs a lent view\'s way back once, when it is given back', () => {
    const view = Buffer.alloc(8)
    let back = 0
    lend(view, () => back++)
    expect(isPooled(view)).toBe(true)
    doneWith(view)
    doneWith(view)
    expect(back).toBe(1)
  })
})
