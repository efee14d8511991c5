/**
 * A long command that stops what it started when interrupted. Every SIGINT and SIGTERM while it
 * runs (`on`, not `once`): left to Node's default action, a second Ctrl-C or a SIGTERM ended the
 * process without its exit handlers, and every server it had started (each in a process group of
 * its own) kept running.
 */
export async function whileInterruptible<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController()
  const interrupt = () => abort.abort()
  process.on('SIGINT', interrupt)
  process.on('SIGTERM', interrupt)
  try {
    return await run(abort.signal)
  } finally {
    process.off('SIGINT', interrupt)
    process.off('SIGTERM', interrupt)
  }
}
