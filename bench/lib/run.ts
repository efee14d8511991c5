/**
 * One benchmark run's lifecycle: a work directory, the sandbox started in it, and Ctrl-C that
 * stops the registries and removes the directory (unless kept) instead of leaving them running.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {startSandbox, type Sandbox, type SandboxOptions} from '../../src/sandbox/sandbox.js'

export interface BenchRun {
  workDir: string
  startSandbox(opts: Omit<SandboxOptions, 'runDir'>): Promise<Sandbox>
  /** throws once the run was interrupted, so the next step does not start */
  checkInterrupted(): void
  /** stop the sandbox and remove the work directory; safe to call more than once */
  finish(): Promise<void>
}

export async function beginRun(name: string, opts: {keep?: boolean; say: (line: string) => void}): Promise<BenchRun> {
  const workDir = await mkdtemp(join(tmpdir(), `kpi-bench-${name}-`))
  let sb: Sandbox | undefined
  let interrupted = false
  let cleaning: Promise<void> | undefined
  // once: the signal handler and the main flow's finally may both get here
  const cleanup = (): Promise<void> => (cleaning ??= (async () => {
    await sb?.stop()
    if (!opts.keep) await rm(workDir, {recursive: true, force: true, maxRetries: 5, retryDelay: 200})
  })())
  const onSignal = () => {
    interrupted = true
    opts.say('interrupted: stopping the registries')
    void cleanup().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return {
    workDir,
    startSandbox: async (o) => (sb = await startSandbox({...o, runDir: join(workDir, 'sandbox')})),
    checkInterrupted: () => {
      if (interrupted) throw new Error('interrupted')
    },
    finish: async () => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      await cleanup()
    },
  }
}
