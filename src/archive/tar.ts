/**
 * The tar format, both ways, reduced to what an archive of regular files needs: ustar headers,
 * PAX extended headers for long names and for sizes of 8 GiB and more (with the size also in
 * base-256, which GNU tar and Go's archive/tar read when they ignore PAX), and a strict parser.
 * Written by hand so the writer knows every byte offset (resume, split parts) and every header is
 * deterministic (mtime 0 unless given, uid/gid 0, mode 0644 unless given). The archive and the
 * image generator (layers with directories, modes, owner root and the buildpacks epoch) both
 * write through `entryHeader`.
 */

export const BLOCK = 512
/** the largest size an 11-digit octal field holds: 8 GiB - 1 */
export const MAX_OCTAL_SIZE = 0o77777777777
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK)

export const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK
/** the zero bytes that pad a member of `size` to the block boundary */
export const paddingBytes = (size: number): Buffer => Buffer.alloc(padding(size))
export const paddedSize = (size: number): number => size + padding(size)

function writeString(buf: Buffer, s: string, offset: number, length: number): void {
  buf.write(s, offset, length, 'utf8')
}

/** `digits` octal digits followed by NUL, as ustar numeric fields are written. */
function writeOctal(buf: Buffer, value: number, offset: number, length: number): void {
  writeString(buf, value.toString(8).padStart(length - 1, '0') + '\0', offset, length)
}

/** GNU base-256: high bit of the first byte set, big-endian value in the rest of the field. */
export function writeBase256(buf: Buffer, value: number, offset: number, length: number): void {
  let v = BigInt(value)
  for (let i = offset + length - 1; i > offset; i--) {
    buf[i] = Number(v & 0xffn)
    v >>= 8n
  }
  buf[offset] = 0x80
}

/** One PAX record: `"<len> <key>=<value>\n"` where len counts the whole record, itself included. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`
  const bodyLen = Buffer.byteLength(body)
  let len = bodyLen + 1
  while (bodyLen + String(len).length !== len) len = bodyLen + String(len).length
  return `${len}${body}`
}

/** Splits a name into ustar prefix (≤155 bytes) and name (≤100 bytes) at a slash, if possible. */
function splitUstarName(name: string): {prefix: string; name: string} | undefined {
  if (Buffer.byteLength(name) <= 100) return {prefix: '', name}
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/') continue
    const prefix = name.slice(0, i)
    const rest = name.slice(i + 1)
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest.length > 0) return {prefix, name: rest}
  }
  return undefined
}

const isAscii = (s: string) => /^[\x20-\x7e]*$/.test(s)

/** What may differ between members besides name and size; every default keeps archive bytes as they were. */
export interface EntryOptions {
  /** default 0o644 */
  mode?: number
  /** seconds since the epoch; default 0. Fixed either way, so the same content gives the same bytes. */
  mtime?: number
  /** a directory member (type '5', size 0); `name` should end in '/' */
  directory?: boolean
  /** user and group name written into the header (with device numbers 0), e.g. `root`; default none */
  owner?: string
}

function ustarBlock(o: {name: string; prefix: string; size: number; type: string} & EntryOptions): Buffer {
  const b = Buffer.alloc(BLOCK)
  writeString(b, o.name, 0, 100)
  writeOctal(b, o.mode ?? 0o644, 100, 8)
  writeOctal(b, 0, 108, 8) // uid
  writeOctal(b, 0, 116, 8) // gid
  if (o.size <= MAX_OCTAL_SIZE) writeOctal(b, o.size, 124, 12)
  else writeBase256(b, o.size, 124, 12)
  writeOctal(b, o.mtime ?? 0, 136, 12)
  b.fill(0x20, 148, 156) // checksum is computed with its own field as spaces
  writeString(b, o.type, 156, 1)
  writeString(b, 'ustar\0', 257, 6)
  writeString(b, '00', 263, 2)
  if (o.owner !== undefined) {
    writeString(b, o.owner, 265, 32)
    writeString(b, o.owner, 297, 32)
    writeOctal(b, 0, 329, 8) // devmajor
    writeOctal(b, 0, 337, 8) // devminor
  }
  writeString(b, o.prefix, 345, 155)
  writeString(b, checksumOf(b).toString(8).padStart(6, '0') + '\0 ', 148, 8)
  return b
}

function checksumOf(b: Buffer): number {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!
  return sum
}

/** The header blocks of one regular-file member with the archive's defaults. */
export const fileHeader = (name: string, size: number): Buffer => entryHeader(name, size)

/**
 * The header blocks of one member: a ustar block, preceded by a PAX extended header when the
 * name does not fit ustar or the size does not fit 11 octal digits.
 */
export function entryHeader(name: string, size: number, opts: EntryOptions = {}): Buffer {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid member size ${size}`)
  if (opts.directory) size = 0
  const records: string[] = []
  let split = isAscii(name) ? splitUstarName(name) : undefined
  if (!split) {
    records.push(paxRecord('path', name))
    // the ustar name is a readable, truncated fallback for readers without PAX
    split = {prefix: '', name: Buffer.from(name).subarray(0, 100).toString('latin1').replace(/[^\x20-\x7e]/g, '_')}
  }
  if (size > MAX_OCTAL_SIZE) records.push(paxRecord('size', String(size)))
  const main = ustarBlock({...opts, name: split.name, prefix: split.prefix, size, type: opts.directory ? '5' : '0'})
  if (records.length === 0) return main
  const pax = Buffer.from(records.join(''))
  const paxHeader = ustarBlock({name: 'PaxHeaders/' + split.name.slice(0, 88), prefix: '', size: pax.length, type: 'x'})
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), main])
}

// ---- parsing ----

export interface RawHeader {
  name: string
  size: number
  type: string
  linkname: string
}

function readString(b: Buffer, offset: number, length: number): string {
  const end = b.indexOf(0, offset)
  return b.toString('utf8', offset, end === -1 || end > offset + length ? offset + length : end)
}

/** A numeric field: octal (space/NUL terminated) or GNU base-256. NaN when malformed. */
export function readNumber(b: Buffer, offset: number, length: number): number {
  if (b[offset]! & 0x80) {
    if (b[offset] === 0xff) return NaN // negative base-256: never valid for a size
    let v = BigInt(b[offset]! & 0x7f)
    for (let i = offset + 1; i < offset + length; i++) v = (v << 8n) | BigInt(b[i]!)
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? NaN : Number(v)
  }
  const s = b.toString('latin1', offset, offset + length).replace(/[\0 ]+$/, '').replace(/^[ ]+/, '')
  if (s === '') return 0
  return /^[0-7]+$/.test(s) ? parseInt(s, 8) : NaN
}

export const isZeroBlock = (b: Buffer): boolean => b.length === BLOCK && b.every((x) => x === 0)

/** Parses one header block; undefined when its checksum is wrong (not a tar header). */
export function parseHeader(b: Buffer): RawHeader | undefined {
  const stored = readNumber(b, 148, 8)
  if (Number.isNaN(stored)) return undefined
  const unsigned = checksumOf(b)
  let signed = 0
  for (let i = 0; i < BLOCK; i++) signed += i >= 148 && i < 156 ? 0x20 : (b[i]! << 24) >> 24
  if (stored !== unsigned && stored !== signed) return undefined
  const name = readString(b, 0, 100)
  const magic = b.toString('latin1', 257, 263)
  const prefix = magic.startsWith('ustar') ? readString(b, 345, 155) : ''
  return {
    name: prefix ? `${prefix}/${name}` : name,
    size: readNumber(b, 124, 12),
    type: String.fromCharCode(b[156] || 0x30),
    linkname: readString(b, 157, 100),
  }
}

/** PAX records of an extended header's data; throws on malformed records. */
export function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let i = 0
  while (i < data.length) {
    if (data[i] === 0) break
    const sp = data.indexOf(0x20, i)
    if (sp === -1) throw new Error('malformed PAX record')
    const len = Number(data.toString('latin1', i, sp))
    if (!Number.isInteger(len) || len <= sp - i + 1 || i + len > data.length) throw new Error('malformed PAX record')
    const rec = data.toString('utf8', sp + 1, i + len - 1)
    const eq = rec.indexOf('=')
    if (eq === -1) throw new Error('malformed PAX record')
    out[rec.slice(0, eq)] = rec.slice(eq + 1)
    i += len
  }
  return out
}

/** What a non-regular type flag is, for messages. */
export function typeName(t: string): string {
  const names: Record<string, string> = {
    '1': 'hard link', '2': 'symbolic link', '3': 'character device', '4': 'block device', '5': 'directory', '6': 'FIFO',
    S: 'GNU sparse file', V: 'GNU volume header', M: 'GNU multi-volume continuation',
  }
  return names[t] ?? `entry of type '${t}'`
}
