/**
 * Content digests: hashing buffers, and a pass-through stream that hashes bytes as they flow so
 * a blob is verified without ever being held whole.
 */
import {createHash} from 'node:crypto'
import {Transform, type TransformCallback} from 'node:stream'
import {KpiError} from '../errors.js'
import {checkDigest} from './reference.js'

export function algorithmOf(digest: string): 'sha256' | 'sha512' {
  checkDigest(digest)
  return digest.slice(0, digest.indexOf(':')) as 'sha256' | 'sha512'
}

export function digestOf(bytes: Buffer | string, algorithm: 'sha256' | 'sha512' = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
}

export const sha256Digest = (bytes: Buffer | string): string => digestOf(bytes, 'sha256')

/** Hex part of a digest: `sha256:abc` -> `abc`. */
export const digestHex = (digest: string): string => digest.slice(digest.indexOf(':') + 1)

export interface VerifyOptions {
  /** expected length in bytes, when known */
  size?: number
  /** what to call the content in the error, e.g. `registry/repo@sha256:...` */
  label?: string
  /** bytes buffered on each side (default 256 KiB) */
  highWaterMark?: number
  /** false: check the length only (whoever receives the bytes checks the digest) */
  digest?: boolean
}

/**
 * A Transform that passes bytes through unchanged while hashing them; at the end it fails with
 * KpiError('integrity') if the digest or the length differ. It also fails as soon as more bytes
 * than `size` arrive, so a wrong blob is not read to its end.
 */
export class DigestVerifier extends Transform {
  readonly expected: string
  readonly size?: number
  private readonly hash?: ReturnType<typeof createHash>
  private readonly label: string
  bytes = 0
  /**
   * Told the length of every chunk that passes: whoever streams the blob on counts its progress
   * here rather than through a Transform of its own (one stream layer less per chunk).
   */
  onBytes?: (n: number) => void

  constructor(expected: string, opts: VerifyOptions = {}) {
    // Larger buffers than node's 16 KiB default: when a download is piped into an upload, small
    // buffers pause and resume both sockets every few chunks, which halves throughput.
    super({highWaterMark: opts.highWaterMark ?? 256 * 1024})
    this.expected = expected
    this.size = opts.size
    this.label = opts.label ?? expected
    algorithmOf(expected)
    if (opts.digest !== false) this.hash = createHash(algorithmOf(expected))
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length
    if (this.size !== undefined && this.bytes > this.size) {
      cb(new KpiError('integrity', `${this.label}: more than the expected ${this.size} bytes`, {hint: 'the source serves different content than its digest names; check the source registry'}))
      return
    }
    this.hash?.update(chunk)
    this.onBytes?.(chunk.length)
    cb(null, chunk)
  }

  override _flush(cb: TransformCallback): void {
    if (this.size !== undefined && this.bytes !== this.size) {
      cb(new KpiError('integrity', `${this.label}: got ${this.bytes} bytes, expected ${this.size}`, {hint: 'the transfer was cut short or the source is corrupt; retry, and check the source if it persists'}))
      return
    }
    if (!this.hash) return cb()
    const got = `${this.expected.slice(0, this.expected.indexOf(':'))}:${this.hash.digest('hex')}`
    if (got !== this.expected) {
      cb(new KpiError('integrity', `${this.label}: content hashes to ${got}, not to its digest`, {hint: 'the source serves corrupt content for this digest; check or repair the source registry'}))
      return
    }
    cb()
  }
}

export const verifyingStream = (expected: string, opts?: VerifyOptions): DigestVerifier => new DigestVerifier(expected, opts)
