/**
 * Reading the text files users hand kpi (bundles, locks, values): bounded in size, and strictly
 * UTF-8. Node's default decoding turns invalid bytes into U+FFFD silently, which could change a
 * name or a password without a word; a file that is not UTF-8 is refused naming the byte.
 */
import {open} from 'node:fs/promises'
import {KpiError} from './errors.js'

/** Far above any real bundle, lock or values file, far below what would strain memory. */
export const MAX_TEXT_FILE_BYTES = 16 * 1024 * 1024

const strict = new TextDecoder('utf-8', {fatal: true, ignoreBOM: false})

/** The offset of the first byte that makes `bytes` invalid UTF-8 (only called on failure). */
function firstInvalidByte(bytes: Uint8Array): number {
  // a streaming decode accepts a prefix that ends inside a sequence, so "this prefix is fine" is
  // monotone and can be searched by halving
  const fine = (n: number): boolean => {
    try {
      new TextDecoder('utf-8', {fatal: true}).decode(bytes.subarray(0, n), {stream: true})
      return true
    } catch {
      return false
    }
  }
  let lo = 0
  let hi = bytes.length
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (fine(mid)) lo = mid
    else hi = mid - 1
  }
  // the longest fine prefix ends just before the offending byte; an incomplete sequence at the end
  // of the file is reported at its first byte
  return lo === bytes.length ? trailingStart(bytes) : lo
}

function trailingStart(bytes: Uint8Array): number {
  let i = bytes.length - 1
  while (i > 0 && i > bytes.length - 4 && (bytes[i]! & 0xc0) === 0x80) i--
  return i
}

/** Decodes UTF-8 or throws KpiError('input') naming the file and the first bad byte. */
export function decodeUtf8(bytes: Uint8Array, file: string, what: string): string {
  try {
    return strict.decode(bytes)
  } catch {
    throw new KpiError('input', `${file}: the ${what} is not valid UTF-8 (byte ${firstInvalidByte(bytes)})`, {
      hint: 'save the file as UTF-8 text',
    })
  }
}

/** Reads a text file whole, refusing one over `maxBytes` before reading it. */
export async function readTextFile(path: string, what: string, maxBytes = MAX_TEXT_FILE_BYTES): Promise<string> {
  const fh = await open(path, 'r')
  try {
    const {size} = await fh.stat()
    if (size > maxBytes) {
      throw new KpiError('input', `${path}: the ${what} is ${size} bytes, more than the ${maxBytes} a ${what} may have`, {
        hint: `check that this is the ${what} you meant`,
      })
    }
    return decodeUtf8(await fh.readFile(), path, what)
  } finally {
    await fh.close()
  }
}
