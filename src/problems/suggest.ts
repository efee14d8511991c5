/**
 * "Did you mean" for the files users edit: one rule everywhere, so a typo is caught the same way
 * in a bundle and in a values file.
 */

/**
 * The known name closest to `word`, when it is a likely typo: equal ignoring case, or within
 * edit distance 2 and a third of the word's length (so short words need a close match).
 */
export function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  const w = word.toLowerCase()
  for (const k of known) {
    const d = distance(w, k.toLowerCase())
    if (d < bestD) [best, bestD] = [k, d]
  }
  return bestD <= Math.min(2, Math.floor(word.length / 3)) || bestD === 0 ? best : undefined
}

/** Edit distance counting a swap of neighbours as one edit (optimal string alignment). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({length: a.length + 1}, (_, i) => Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}
