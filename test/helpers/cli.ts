/** Runs the built kpi CLI (dist/) as a user would, capturing its output. */
import {spawn, type ChildProcess} from 'node:child_process'
import {fileURLToPath} from 'node:url'

export const KPI_BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export function startKpi(args: string[], env: Record<string, string> = {}, opts: {cwd?: string} = {}): {child: ChildProcess; done: Promise<CliResult>} {
  const child = spawn(process.execPath, [KPI_BIN, ...args], {
    cwd: opts.cwd,
    env: {...process.env, ...env, NO_COLOR: '1', CI: 'true'},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d) => (stdout += d))
  child.stderr!.on('data', (d) => (stderr += d))
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({code, signal, stdout, stderr})))
  return {child, done}
}

export const kpi = (args: string[], env: Record<string, string> = {}, opts: {cwd?: string} = {}): Promise<CliResult> => startKpi(args, env, opts).done

/** The error lines of a failed run, without oclif's module-load warnings. */
export const errorLines = (r: CliResult): string[] => r.stderr.split('\n').filter((l) => l.startsWith('Error:'))

export function expectCleanFailure(r: CliResult): string {
  if (r.code === 0) throw new Error(`expected a failure, got exit 0\n${r.stdout}\n${r.stderr}`)
  if (/^\s+at /m.test(r.stderr)) throw new Error(`stack trace in stderr:\n${r.stderr}`)
  const lines = errorLines(r)
  if (lines.length !== 1) throw new Error(`expected one Error: line, got ${lines.length}:\n${r.stderr}`)
  return lines[0]!
}

/** Resolves true when `re` matches what the child wrote to stderr so far, false if it exits first. */
export function stderrShows(run: ReturnType<typeof startKpi>, re: RegExp): Promise<boolean> {
  return new Promise((resolve) => {
    let seen = ''
    run.child.stderr!.on('data', (d: Buffer) => {
      seen += d.toString()
      if (re.test(seen)) resolve(true)
    })
    void run.done.then(() => resolve(false))
  })
}
