/** Plain-text tables and the units benchmark reports use (binary units: MiB, GiB). */

export type Cell = string | number | undefined

export interface Column {
  title: string
  /** numbers read best right-aligned; default: right for numbers, left for text */
  align?: 'left' | 'right'
}

/** A table with a header rule; `undefined` cells print as `-`. */
export function renderTable(columns: Array<Column | string>, rows: Cell[][]): string {
  const cols: Column[] = columns.map((c) => (typeof c === 'string' ? {title: c} : c))
  const text = rows.map((r) => cols.map((_, i) => (r[i] === undefined || r[i] === '' ? '-' : String(r[i]))))
  const widths = cols.map((c, i) => Math.max(c.title.length, ...text.map((r) => r[i]!.length)))
  const rightAligned = cols.map((c, i) => c.align ? c.align === 'right' : rows.length > 0 && rows.every((r) => r[i] === undefined || typeof r[i] === 'number' || /^[\d.,]+\s*\S*$/.test(String(r[i]))))
  const line = (cells: string[]) => cells.map((c, i) => (rightAligned[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(cols.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w))), ...text.map(line)].join('\n')
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/** A markdown table's header row and its separator: the first column left-aligned, the numbers right. */
export function markdownHead(cells: ReadonlyArray<string | undefined>): [string, string] {
  return [`| ${cells.join(' | ')} |`, `|${cells.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`]
}

export function fmtBytes(n: number | undefined): string | undefined {
  if (n === undefined || !Number.isFinite(n)) return undefined
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`
}

export function fmtMs(ms: number | undefined): string | undefined {
  if (ms === undefined || !Number.isFinite(ms)) return undefined
  if (ms < 1000) return `${Math.round(ms)} ms`
  const s = ms / 1000
  return s < 600 ? `${s.toFixed(s < 10 ? 2 : 1)} s` : `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`
}

/** MiB/s of `bytes` over `ms`. */
export function mibPerSec(bytes: number, ms: number): number {
  return bytes / 1048576 / Math.max(ms / 1000, 1e-9)
}

export function fmtRate(bytes: number | undefined, ms: number | undefined): string | undefined {
  if (bytes === undefined || ms === undefined || ms <= 0) return undefined
  const r = mibPerSec(bytes, ms)
  return `${r.toFixed(r >= 100 ? 0 : 1)} MiB/s`
}

/** `2.31x`: how many times `value` is `base` (peer time / kpi time). */
export function fmtRatio(value: number | undefined, base: number | undefined): string | undefined {
  if (value === undefined || base === undefined || base <= 0) return undefined
  return `${(value / base).toFixed(2)}x`
}
