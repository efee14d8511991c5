/**
 * The one way kpi runs async work side by side: a bounded pool (registry requests, uploads,
 * server-side applies, lookups), and helpers over it. Bounded because registries and API
 * servers throttle, and a tar is written one member at a time (limit(1)).
 */

/** A bounded pool (limit): run a task in it; what it holds; `widen` lets one more run at once. */
export interface Limited {
  <T>(task: () => Promise<T>, priority?: number): Promise<T>
  readonly running: number
  readonly waiting: number
  readonly width: number
  widen(): void
}

/**
 * A bounded pool: at most `n` of the returned function's tasks run at once, in the order given;
 * a waiting task with a higher `priority` (default 0) starts before lower ones. `gather`: nothing
 * starts until the tasks given in the same turn are all in, so the first to start are the highest.
 */
export function limit(n: number, o: {gather?: boolean} = {}): Limited {
  let active = 0
  let width = n
  const queue: Array<{start: () => void; priority: number}> = []
  const next = () => {
    if (active >= width) return
    const first = queue.shift()
    if (first) {
      active++
      first.start()
    }
  }
  const run = <T>(task: () => Promise<T>, priority = 0) =>
    new Promise<T>((resolve, reject) => {
      const start = () => {
        task().then(resolve, reject).finally(() => {
          active--
          next()
        })
      }
      // after every waiting task of at least this priority: equal ones keep their order
      let i = queue.length
      while (i > 0 && queue[i - 1]!.priority < priority) i--
      queue.splice(i, 0, {start, priority})
      if (o.gather) setImmediate(next)
      else next()
    })
  return Object.defineProperties(run, {
    running: {get: () => active},
    waiting: {get: () => queue.length},
    width: {get: () => width},
    widen: {value: () => {
      width++
      next()
    }},
  }) as Limited
}

/**
 * `f` over every item, at most `n` at once; results in the items' order. After the first failure
 * no further item starts; the ones running finish, then the first error is thrown.
 */
export async function mapLimit<T, R>(items: readonly T[], n: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const pool = limit(Math.max(1, n))
  let failed = false
  const settled = await Promise.allSettled(items.map((x) => pool(async () => {
    if (failed) throw skipped
    try {
      return await f(x)
    } catch (e) {
      failed = true
      throw e
    }
  })))
  const first = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected' && s.reason !== skipped)
  if (first) throw first.reason
  return settled.map((s) => (s as PromiseFulfilledResult<R>).value)
}

const skipped = Symbol('skipped after a failure')

/** Memoise an async function by key: each key's work runs once, later callers share it. */
export function once<T>(): (key: string, f: () => Promise<T>) => Promise<T> {
  const seen = new Map<string, Promise<T>>()
  return (key, f) => {
    let p = seen.get(key)
    if (!p) {
      p = f()
      seen.set(key, p)
    }
    return p
  }
}

/**
 * Memoise an async lookup by key (credentials per registry): callers share one run per key; a
 * failure is forgotten, so the next caller tries again.
 */
export function memoAsync<T>(f: (key: string) => Promise<T>, keyOf: (key: string) => string = (k) => k): (key: string) => Promise<T> {
  const cache = new Map<string, Promise<T>>()
  return (key) => {
    const k = keyOf(key)
    let p = cache.get(k)
    if (!p) {
      p = f(key)
      cache.set(k, p)
      p.catch(() => cache.delete(k))
    }
    return p
  }
}
