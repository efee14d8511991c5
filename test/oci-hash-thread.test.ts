/**
 * Large blobs are hashed on a thread of their own (src/oci/hash-thread.ts), reading the pool's
 * shared buffers in place. Whoever writes a chunk out gives its buffer back at once; the buffer
 * must still not be read into again before the hash thread has read it, and the stream must wait
 * while the hash thread is far behind rather than hold every buffer.
 */
import {createHash, randomBytes} from 'node:crypto'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {poolCounts} from '../src/oci/buffer-pool.js'
import {DigestVerifier, doneWith, handOut, takeBuffer} from '../src/oci/index.js'

const digest = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`
const SLAB = 256 * 1024

/** `bytes` in chunks of pooled buffers, each taken only when the stream asks for it */
function pooledSource(bytes: Buffer, chunk: number): Readable {
  let at = 0
  return new Readable({
    read() {
      if (at >= bytes.length) return void this.push(null)
      const slab = takeBuffer(SLAB)
      // whatever a reused buffer held before is overwritten here, as a socket read would
      const n = Math.min(chunk, bytes.length - at)
      bytes.copy(slab, 0, at, at + n)
      slab.fill(0xee, n)
      const view = slab.subarray(0, n)
      handOut(view, slab)
      at += n
      this.push(view)
    },
  })
}

/** writes nothing, gives every chunk back at once, as the archive writer does after its write */
const givingBack = () => new Writable({highWaterMark: SLAB, write: (c: Buffer, _e, cb) => (doneWith(c), cb())})

describe('hashing on the hash thread', () => {
  it('gets every digest right with blobs side by side whose buffers are given back and read into again at once', async () => {
    const blobs = Array.from({length: 5}, (_, i) => randomBytes(20 * 1024 * 1024 + i * 4099))
    const before = poolCounts()
    await Promise.all(blobs.map((b) => pipeline(pooledSource(b, 61_000), new DigestVerifier(digest(b), {size: b.length}), givingBack())))
    // buffers did go round: most chunks were read into a buffer given back before
    expect(poolCounts().reused - before.reused).toBeGreaterThan(blobs.length * 100)
  })

  it('refuses a large blob with one byte flipped, pooled or not, naming its digest', async () => {
    const good = randomBytes(3 * 1024 * 1024)
    const bad = Buffer.from(good)
    bad[2_000_000] = bad[2_000_000]! ^ 1
    for (const source of [() => pooledSource(bad, 65_536), () => Readable.from([bad.subarray(0, 1_000_000), bad.subarray(1_000_000)])]) {
      const err = await pipeline(source(), new DigestVerifier(digest(good), {size: good.length, label: 'blob X'}), givingBack()).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(KpiError)
      expect((err as KpiError).message).toBe(`blob X: content hashes to ${digest(bad)}, not to its digest`)
    }
  })

  it('holds the stream while the hash thread is behind: a blob far larger than what it holds takes few buffers', async () => {
    const blob = randomBytes(96 * 1024 * 1024)
    const before = poolCounts()
    await pipeline(pooledSource(blob, SLAB), new DigestVerifier(digest(blob), {size: blob.length}), givingBack())
    const chunks = blob.length / SLAB
    // without the wait the reader runs ahead of hashing and takes a new buffer for nearly every chunk
    expect(poolCounts().allocated - before.allocated).toBeLessThan(chunks / 4)
  })

  it('lets the process exit once no hash is running', async () => {
    const {execFileSync} = await import('node:child_process')
    // the built module (the tests run after the build): a hash thread kept referenced would hold
    // this process open until the timeout kills it
    const code = `
      const {DigestVerifier} = await import('${new URL('../dist/oci/digest.js', import.meta.url).pathname}')
      const {createHash, randomBytes} = await import('node:crypto')
      const b = randomBytes(2 << 20)
      const v = new DigestVerifier('sha256:' + createHash('sha256').update(b).digest('hex'), {size: b.length})
      v.resume()
      v.on('end', () => console.log('verified'))
      v.end(b)`
    expect(execFileSync(process.execPath, ['--input-type=module', '-e', code], {encoding: 'utf8', timeout: 20_000})).toBe('verified\n')
  })
})
