/** Medians and spreads of repeated measurements. */

export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1]! + s[m]!) / 2
}

/** (max - min) / median: how far apart the rounds were, relative to the median. */
export function spread(xs: number[]): number | undefined {
  const m = median(xs)
  if (m === undefined || m === 0 || xs.length < 2) return undefined
  return (Math.max(...xs) - Math.min(...xs)) / m
}

/** `xs` rotated by `k`: round k of a benchmark runs the tools in this order, so none is always first. */
export function rotate<T>(xs: T[], k: number): T[] {
  if (xs.length === 0) return xs
  const i = ((k % xs.length) + xs.length) % xs.length
  return [...xs.slice(i), ...xs.slice(0, i)]
}

/** Rounded to the thousandth (seconds to the millisecond, ratios to three places). */
export const round3 = (x: number | undefined): number | undefined => (x === undefined ? undefined : Math.round(x * 1000) / 1000)

/** The fastest of [tool, seconds] pairs and its seconds; undefined for none. */
export function fastest<T>(xs: ReadonlyArray<readonly [T, number]>): readonly [T, number] | undefined {
  return xs.length ? xs.reduce((a, b) => (b[1] < a[1] ? b : a)) : undefined
}
