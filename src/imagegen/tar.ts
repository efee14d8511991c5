/**
 * USTAR headers written by hand so every field is fixed: uid/gid 0, owner root, one mtime,
 * no pax records. Paths up to 255 bytes (name + prefix).
 */
export const TAR_BLOCK = 512
/** 1980-01-01T00:00:01Z, the reproducible-build epoch the buildpacks ecosystem uses */
export const FIXED_MTIME = 315532801

export interface TarEntry {
  /** relative path; directories end in '/' */
  path: string
  size: number
  mode: number
}

function field(buf: Buffer, offset: number, length: number, value: string): void {
  buf.write(value, offset, length, 'utf8')
}

function octal(buf: Buffer, offset: number, length: number, value: number): void {
  // length-1 octal digits then NUL, the form GNU and BSD tar both read
  field(buf, offset, length, value.toString(8).padStart(length - 1, '0') + '\0')
}

function splitPath(path: string): {name: string; prefix: string} {
  if (Buffer.byteLength(path) <= 100) return {name: path, prefix: ''}
  // ustar: prefix (<=155) + '/' + name (<=100), split at a slash
  for (let i = path.lastIndexOf('/', path.length - 2); i > 0; i = path.lastIndexOf('/', i - 1)) {
    const prefix = path.slice(0, i)
    const name = path.slice(i + 1)
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100) return {name, prefix}
  }
  throw new Error(`tar path too long for ustar: ${path}`)
}

export function tarHeader(e: TarEntry): Buffer {
  if (e.size >= 8 ** 11) throw new Error(`tar entry too large for ustar: ${e.path}`)
  const h = Buffer.alloc(TAR_BLOCK)
  const dir = e.path.endsWith('/')
  const {name, prefix} = splitPath(e.path)
  field(h, 0, 100, name)
  octal(h, 100, 8, e.mode)
  octal(h, 108, 8, 0)
  octal(h, 116, 8, 0)
  octal(h, 124, 12, dir ? 0 : e.size)
  octal(h, 136, 12, FIXED_MTIME)
  field(h, 148, 8, '        ')
  field(h, 156, 1, dir ? '5' : '0')
  field(h, 257, 6, 'ustar\0')
  field(h, 263, 2, '00')
  field(h, 265, 32, 'root')
  field(h, 297, 32, 'root')
  octal(h, 329, 8, 0)
  octal(h, 337, 8, 0)
  field(h, 345, 155, prefix)
  let sum = 0
  for (const b of h) sum += b
  field(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ')
  return h
}

/** zero bytes that pad an entry of `size` to the block boundary */
export function tarPadding(size: number): Buffer {
  const rem = size % TAR_BLOCK
  return Buffer.alloc(rem === 0 ? 0 : TAR_BLOCK - rem)
}

/** two zero blocks end an archive */
export const tarEnd = (): Buffer => Buffer.alloc(2 * TAR_BLOCK)
