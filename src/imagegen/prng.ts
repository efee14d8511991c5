/**
 * Seeded pseudo-random bytes: AES-128 in counter mode over zeros, keyed by sha256 of the seed.
 * Counter mode is a standard (same bytes from any OpenSSL on any CPU), runs at GB/s with AES-NI,
 * and its output does not depend on how it is chunked.
 */
import {createCipheriv, createHash} from 'node:crypto'

const zeros = Buffer.alloc(1 << 20)

export interface RandomStream {
  /** the next `n` bytes of the stream */
  next(n: number): Buffer
}

export function randomStream(seed: string): RandomStream {
  const k = createHash('sha256').update('kpi-imagegen prng\0').update(seed).digest()
  const cipher = createCipheriv('aes-128-ctr', k.subarray(0, 16), k.subarray(16, 32))
  return {
    next(n: number): Buffer {
      if (n <= zeros.length) return cipher.update(zeros.subarray(0, n))
      return Buffer.concat(Array.from({length: Math.ceil(n / zeros.length)}, (_, i) =>
        cipher.update(zeros.subarray(0, Math.min(zeros.length, n - i * zeros.length)))))
    },
  }
}
