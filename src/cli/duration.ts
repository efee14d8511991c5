/** Duration flags (`--timeout 5m`) as milliseconds. */
import {KpiError} from '../errors.js'

/** `90s`, `5m`, `1h30m`, `1500ms`, or a bare number of seconds. */
export function parseDuration(s: string | undefined, flag: string): number | undefined {
  if (s === undefined) return undefined
  const t = s.trim()
  // bare seconds; zero is refused below as "0s" is: undici takes 0 for "no timeout", a stage wait for "expire at once"
  if (/^\d+$/.test(t) && Number(t) > 0) return Number(t) * 1000
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g
  let total = 0
  let used = 0
  for (const m of t.matchAll(re)) {
    total += Number(m[1]) * {ms: 1, s: 1000, m: 60_000, h: 3_600_000}[m[2] as 'ms' | 's' | 'm' | 'h']
    used += m[0].length
  }
  if (!t || used !== t.length || total <= 0) {
    throw new KpiError('usage', `${flag} "${s}" is not a duration`, {hint: 'write it like 90s, 5m or 1h30m'})
  }
  return total
}
