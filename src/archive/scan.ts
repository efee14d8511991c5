/**
 * One pass over a tar's headers, seeking past member data (layers are never read here), to map
 * member names to byte ranges. Strict by default: anything but plain regular files with
 * canonical relative names is refused before anything is used, since an archive crosses a
 * trust boundary. The lenient mode stops at the first problem instead, for --resume.
 */
import {KpiError} from '../errors.js'
import type {PartSet} from './parts.js'
import {BLOCK, isZeroBlock, paddedSize, parseHeader, parsePax, typeName} from './tar.js'

export interface Member {
  name: string
  /** virtual offset of the first header block of the member (PAX header included) */
  start: number
  /** virtual offset of the data */
  offset: number
  size: number
  /** virtual offset after the data and its padding */
  end: number
}

export interface ScanResult {
  members: Member[]
  byName: Map<string, Member>
  /** offset of the end-of-archive marker, or of the end of the last good member (lenient) */
  end: number
  /** lenient mode: why the scan stopped early */
  stopped?: string
}

/**
 * Bytes of extended headers (PAX 'x' and 'g', GNU 'L') one member may have, all of them together:
 * a crafted archive of many such headers before one member would otherwise be parsed and held
 * without bound (24 MiB of them took 51 s and 864 MB). kpi writes at most one, of a few hundred bytes.
 */
const MAX_EXT_HEADER = 1 << 20
/** the PAX keys the scan reads; the rest are dropped as each header is parsed, so merging stays linear */
const PAX_KEYS = ['path', 'size', 'linkpath'] as const

/** Why `name` is not a canonical relative member name, or undefined when it is. */
export function badName(name: string): string | undefined {
  if (name === '') return 'an empty name'
  if (name.includes('\0')) return 'a NUL byte in its name'
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'an absolute path'
  if (name.includes('\\')) return 'a backslash in its name'
  const parts = name.split('/')
  if (parts.includes('..')) return "a '..' path component that escapes the archive"
  if (parts.some((p) => p === '' || p === '.')) return 'a non-canonical path (empty or "." component)'
  return undefined
}

export async function scanTar(parts: PartSet, label: string, opts: {lenient?: boolean} = {}): Promise<ScanResult> {
  const members: Member[] = []
  const byName = new Map<string, Member>()
  let offset = 0
  let goodEnd = 0
  const total = parts.total
  const crafted = 'the archive is damaged or was not written by kpi; get a fresh copy from where it was made'
  const nextPart = () => {
    if (parts.files.length > 1) return `; if it is split, check that no part after ${parts.files[parts.files.length - 1]} is missing`
    return ''
  }
  const fail = (kind: 'input' | 'integrity', message: string, hint: string): ScanResult => {
    if (opts.lenient) return {members, byName, end: goodEnd, stopped: message}
    throw new KpiError(kind, `archive ${label}: ${message}`, {hint})
  }
  const truncated = (what: string) =>
    fail('integrity', `truncated: ${what}, but the archive ends at byte ${total}`, `the copy is incomplete; copy the archive again${nextPart()}`)

  for (;;) {
    const memberStart = offset
    const pax: Partial<Record<(typeof PAX_KEYS)[number], string>> = {}
    let longName: string | undefined
    let extHeaders = 0
    let extBytes = 0
    let header
    // extended headers (PAX 'x', GNU 'L') apply to the header that follows them; 'g' is skipped
    for (;;) {
      if (offset + BLOCK > total) return truncated(`a header is expected at byte ${offset}`)
      const block = await parts.read(offset, BLOCK)
      if (isZeroBlock(block)) {
        if (extHeaders === 0) return {members, byName, end: offset}
        return fail('integrity', `an extended header at byte ${memberStart} is not followed by a member`, crafted)
      }
      const h = parseHeader(block)
      if (!h || Number.isNaN(h.size)) return fail('integrity', `bad tar header at byte ${offset} (checksum or size field)`, crafted)
      offset += BLOCK
      if (h.type === 'x' || h.type === 'g' || h.type === 'L') {
        extHeaders++
        extBytes += h.size
        if (extBytes > MAX_EXT_HEADER) {
          return fail('input', `extended headers from byte ${memberStart} hold ${extBytes} bytes by the one at byte ${offset - BLOCK}, more than the ${MAX_EXT_HEADER} one member may have`, crafted)
        }
        if (offset + h.size > total) return truncated(`an extended header needs bytes up to ${offset + h.size}`)
        const data = await parts.read(offset, h.size)
        offset += paddedSize(h.size)
        if (h.type === 'x') {
          try {
            const records = parsePax(data)
            for (const k of PAX_KEYS) if (records[k] !== undefined) pax[k] = records[k]
          } catch {
            return fail('integrity', `malformed PAX header at byte ${offset}`, crafted)
          }
        } else if (h.type === 'L') {
          longName = data.toString('utf8').replace(/\0+$/, '')
        }
        continue
      }
      header = h
      break
    }
    const name = pax.path ?? longName ?? header.name
    const size = pax.size !== undefined ? Number(pax.size) : header.size
    if (!Number.isSafeInteger(size) || size < 0) return fail('integrity', `member "${name}" has an invalid size`, crafted)
    if (!['0', '\0', '7'].includes(header.type)) {
      const link = header.type === '1' || header.type === '2' ? ` -> ${pax.linkpath ?? header.linkname}` : ''
      return fail('input', `member "${name}"${link} is a ${typeName(header.type)}; an archive holds only regular files`, crafted)
    }
    const why = badName(name)
    if (why) return fail('input', `member "${name}" has ${why}`, crafted)
    if (byName.has(name)) return fail('input', `member "${name}" appears twice`, crafted)
    const dataOffset = offset
    const end = dataOffset + paddedSize(size)
    if (end > total) return truncated(`member "${name}" needs bytes up to ${end}`)
    const m: Member = {name, start: memberStart, offset: dataOffset, size, end}
    members.push(m)
    byName.set(name, m)
    offset = end
    goodEnd = end
  }
}
