/**
 * A gzip stream of stored (uncompressed) deflate blocks, written by hand. Why not zlib: its
 * compressed output is not the same across zlib builds (Node ships Chromium's zlib, whose match
 * finding depends on CPU features), and a digest must not. PRNG content does not compress
 * anyway, so stored blocks cost ~0.01% in size. Readers see ordinary gzip.
 *
 * Blocks are always 65535 bytes except the last, whatever the input chunking, so the output
 * depends only on the input bytes. A pushed buffer may be reused once the pieces that push()
 * returned for it are written; the few bytes kept for the next block are copied.
 */
import {crc32} from 'node:zlib'

const MAX_BLOCK = 65535
// magic, CM=deflate, FLG=0 (no name, no comment), MTIME=0, XFL=0, OS=255 (unknown)
const HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff])

function blockHeader(len: number, final: boolean): Buffer {
  const b = Buffer.alloc(5)
  b[0] = final ? 1 : 0 // BFINAL, BTYPE=00 (stored); stored blocks stay byte-aligned
  b.writeUInt16LE(len, 1)
  b.writeUInt16LE(~len & 0xffff, 3)
  return b
}

export interface StoredGzip {
  /** feed uncompressed bytes; returns gzip bytes ready to write (possibly none) */
  push(data: Buffer): Buffer[]
  /** the last block and the trailer */
  end(): Buffer[]
}

export function storedGzip(): StoredGzip {
  let crc = 0
  let isize = 0
  let started = false
  let pending: Buffer[] = []
  let pendingLen = 0

  const start = (out: Buffer[]): void => {
    if (!started) out.push(HEADER)
    started = true
  }

  return {
    push(data: Buffer): Buffer[] {
      const out: Buffer[] = []
      start(out)
      if (data.length === 0) return out
      crc = crc32(data, crc)
      isize = (isize + data.length) >>> 0
      let off = 0
      if (pendingLen > 0) {
        const take = Math.min(MAX_BLOCK - pendingLen, data.length)
        pending.push(Buffer.from(data.subarray(0, take)))
        pendingLen += take
        off = take
        if (pendingLen < MAX_BLOCK) return out
        out.push(blockHeader(MAX_BLOCK, false), ...pending)
        pending = []
        pendingLen = 0
      }
      while (data.length - off >= MAX_BLOCK) {
        out.push(blockHeader(MAX_BLOCK, false), data.subarray(off, off + MAX_BLOCK))
        off += MAX_BLOCK
      }
      if (off < data.length) {
        // copied: the caller may refill `data` once the returned pieces are written
        pending = [Buffer.from(data.subarray(off))]
        pendingLen = data.length - off
      }
      return out
    },
    end(): Buffer[] {
      const out: Buffer[] = []
      start(out)
      out.push(blockHeader(pendingLen, true), ...pending)
      pending = []
      pendingLen = 0
      const trailer = Buffer.alloc(8)
      trailer.writeUInt32LE(crc >>> 0, 0)
      trailer.writeUInt32LE(isize, 4)
      out.push(trailer)
      return out
    },
  }
}
