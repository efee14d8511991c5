/** A bounded pool: at most `n` of the returned function's tasks run at once. */
export function limit(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0
  const queue: Array<() => void> = []
  const next = () => {
    if (active >= n) return
    const start = queue.shift()
    if (start) {
      active++
      start()
    }
  }
  return <T>(task: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        task().then(resolve, reject).finally(() => {
          active--
          next()
        })
      })
      next()
    })
}

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
