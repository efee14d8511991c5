/** Run `f` over `items`, at most `limit` at a time, results in input order; the first failure stops new work and is thrown. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, f: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  let failed: {e: unknown} | undefined
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++
      try {
        out[i] = await f(items[i]!, i)
      } catch (e) {
        failed ??= {e}
      }
    }
  }
  await Promise.all(Array.from({length: Math.max(1, Math.min(limit, items.length))}, worker))
  if (failed) throw failed.e
  return out
}
