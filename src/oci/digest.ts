/**
 * Content digests: hashing buffers, and a pass-through stream that hashes bytes as they flow so
 * a blob is verified without ever being held whole.
 */
import {createHash} from 'node:crypto'
import {Transform, type Readable, type TransformCallback} from 'node:stream'
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
 * The check of one blob's bytes as they pass: `update` counts and hashes each chunk and answers
 * a KpiError('integrity') as soon as more bytes than `size` arrive (a wrong blob is not read to
 * its end); `end` answers one if the length or the digest differ, else undefined. Answered, not
 * thrown: both go straight to a stream callback. For a consumer that handles the chunks itself,
 * with no stream layer of its own (the archive writer); DigestVerifier wraps it.
 */
export interface DigestCheck {
  readonly bytes: number
  update(chunk: Buffer): KpiError | undefined
  end(): KpiError | undefined
}

export function digestCheck(expected: string, opts: Pick<VerifyOptions, 'size' | 'label' | 'digest'> = {}): DigestCheck {
  const algorithm = algorithmOf(expected)
  const hash = opts.digest !== false ? createHash(algorithm) : undefined
  const label = opts.label ?? expected
  const {size} = opts
  let bytes = 0
  return {
    get bytes() {
      return bytes
    },
    update(chunk) {
      bytes += chunk.length
      if (size !== undefined && bytes > size) {
        return new KpiError('integrity', `${label}: more than the expected ${size} bytes`, {hint: 'the source serves different content than its digest names; check the source registry'})
      }
      hash?.update(chunk)
      return undefined
    },
    end() {
      if (size !== undefined && bytes !== size) {
        return new KpiError('integrity', `${label}: got ${bytes} bytes, expected ${size}`, {hint: 'the transfer was cut short or the source is corrupt; retry, and check the source if it persists'})
      }
      if (!hash) return undefined
      const got = `${algorithm}:${hash.digest('hex')}`
      if (got !== expected) {
        return new KpiError('integrity', `${label}: content hashes to ${got}, not to its digest`, {hint: 'the source serves corrupt content for this digest; check or repair the source registry'})
      }
      return undefined
    },
  }
}

/**
 * A Transform that passes bytes through unchanged while checking them (digestCheck): it fails
 * as soon as more bytes than `size` arrive, and at the end if the digest or the length differ.
 */
export class DigestVerifier extends Transform {
  readonly expected: string
  readonly size?: number
  private readonly check: DigestCheck
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
    this.check = digestCheck(expected, opts)
  }

  get bytes(): number {
    return this.check.bytes
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const wrong = this.check.update(chunk)
    if (wrong) return cb(wrong)
    this.onBytes?.(chunk.length)
    cb(null, chunk)
  }

  override _flush(cb: TransformCallback): void {
    cb(this.check.end())
  }
}

export const verifyingStream = (expected: string, opts?: VerifyOptions): DigestVerifier => new DigestVerifier(expected, opts)

/**
 * `source` piped through `verifier`: the source's errors fail the verifier (`mapError` names
 * them), and a verifier closed early (its consumer gave up) lets the source go, so no socket,
 * file or pooled buffer is held by a stream nobody reads.
 */
export function verifiedFrom(source: Readable, verifier: DigestVerifier, mapError: (e: Error) => Error = (e) => e): DigestVerifier {
  source.on('error', (e) => verifier.destroy(mapError(e)))
  verifier.once('close', () => {
    if (!source.destroyed) source.destroy()
  })
  return source.pipe(verifier)
}
