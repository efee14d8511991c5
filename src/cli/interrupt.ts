/**
 * A long command that stops what it started when interrupted. Every SIGINT, SIGTERM and SIGHUP (its
 * terminal closed) while it runs (`on`, not `once`): left to Node's default action, a second
 * Ctrl-C, a SIGTERM or a closed terminal ended the process without its exit handlers, and every
 * server it had started (each in a process group of its own) kept running. (`nohup` cannot keep
 * kpi running through a closed terminal either way: Node resets every ignored signal to its
 * default action at start, so a nohup'd kpi was ended by SIGHUP; now it stops cleanly.)
 */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

export async function whileInterruptible<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController()
  const interrupt = () => abort.abort()
  for (const s of SIGNALS) process.on(s, interrupt)
  try {
    return await run(abort.signal)
  } finally {
    for (const s of SIGNALS) process.off(s, interrupt)
  }
}
