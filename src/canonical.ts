/**
 * Canonical form of plain data: what render prints, what revision digests and what apply compares
 * must not depend on the order keys were built in.
 */

/** A deep copy with map keys sorted; undefined fields dropped, as JSON would. */
export function canonical<T>(v: T): T {
  if (Array.isArray(v)) return v.map((x) => canonical(x)) as T
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k]
      if (x !== undefined) out[k] = canonical(x)
    }
    return out as T
  }
  return v
}
