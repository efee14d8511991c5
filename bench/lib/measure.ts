/**
 * Runs a command the way a user would and measures it: wall time from here, peak resident set
 * size from GNU time (`/usr/bin/time -f %M`), which reads the child's rusage, so the number is the
 * tool's own and not this Node process's. Output is captured for parsing (kpi --json summaries).
 */
import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import {procStat} from '../../src/sandbox/procs.js'

export const GNU_TIME = process.env.KPI_BENCH_TIME_BIN ?? '/usr/bin/time'

export interface CommandSpec {
  cmd: string
  args: string[]
  /** added to (and overriding) this process's environment */
  env?: Record<string, string>
  cwd?: string
  /** a short name for messages, e.g. `crane copy kpack/controller` */
  label?: string
}

/** What GNU time reports of a child: its own peak RSS and CPU, not this process's. */
export interface Rusage {
  /** peak RSS in bytes; undefined if GNU time did not report it (killed by a signal) */
  peakRssBytes?: number
  /** user + system CPU seconds of the process and its children (GNU time's %U + %S) */
  cpuS?: number
}

export interface Measured extends Rusage {
  label: string
  code: number | null
  signal: NodeJS.Signals | null
  wallMs: number
  stdout: string
  stderr: string
  /** 1-minute load average when the command started and ended: the machine is shared */
  load: {start: number; end: number}
}

/**
 * `run` given the command wrapped in GNU time, and its result with the child's rusage added.
 * `ifInstalled`: without GNU time the command runs bare, with no rusage (otherwise it fails to start).
 */
export async function withRusage<T extends object>(cmd: string, args: string[], run: (cmd: string, args: string[]) => Promise<T>, opts: {ifInstalled?: boolean} = {}): Promise<T & Rusage> {
  if (opts.ifInstalled && !existsSync(GNU_TIME)) return run(cmd, args)
  const dir = await mkdtemp(join(tmpdir(), 'kpi-bench-time-'))
  const out = join(dir, 'rusage')
  try {
    const r = await run(GNU_TIME, ['-f', '%M %U %S', '-o', out, cmd, ...args])
    const text = await readFile(out, 'utf8').catch(() => '')
    // GNU time writes "Command exited with non-zero status N" before the format line on failure
    const last = text.trim().split('\n').map((l) => /^(\d+) ([\d.]+) ([\d.]+)$/.exec(l.trim())).filter((m) => m !== null).pop()
    return {...r, peakRssBytes: last ? Number(last[1]) * 1024 : undefined, cpuS: last ? Number(last[2]) + Number(last[3]) : undefined}
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

/**
 * CPU seconds (user + system, all threads) a running process has used so far, from
 * /proc/PID/stat; undefined where there is no /proc or the process is gone. The clock tick is
 * Linux's USER_HZ, 100 on every architecture Node runs on.
 */
export async function processCpuSeconds(pid: number | undefined): Promise<number | undefined> {
  const fields = pid === undefined ? undefined : await procStat(pid)
  if (!fields || fields.length < 13) return undefined
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Run one command under GNU time. Never throws for a failing command: check `code`. */
export async function measure(spec: CommandSpec): Promise<Measured> {
  const label = spec.label ?? [spec.cmd, ...spec.args].join(' ')
  const loadStart = loadavg()[0]!
  const r = await withRusage(spec.cmd, spec.args, async (cmd, args) => {
    const started = performance.now()
    const child = spawn(cmd, args, {
      cwd: spec.cwd,
      env: {...process.env, ...spec.env},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const {code, signal} = await new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (c, s) => resolve({code: c, signal: s}))
    })
    return {code, signal, wallMs: performance.now() - started, stdout, stderr}
  })
  return {label, ...r, load: {start: loadStart, end: loadavg()[0]!}}
}

export interface MeasuredLoop {
  runs: Measured[]
  /** wall time of the whole loop, one command after another */
  wallMs: number
  /** the largest peak RSS of any run: a loop is as heavy as its heaviest process */
  peakRssBytes?: number
  /** CPU seconds of all runs together */
  cpuS?: number
  failures: Measured[]
  load: {start: number; end: number}
}

/**
 * Run commands one after another, as a user's shell loop would (a peer without a bundle concept
 * is scripted image by image). Stops at the first failure unless `keepGoing`.
 */
export async function measureLoop(specs: CommandSpec[], opts: {keepGoing?: boolean; onRun?: (m: Measured, i: number) => void} = {}): Promise<MeasuredLoop> {
  const runs: Measured[] = []
  const loadStart = loadavg()[0]!
  const started = performance.now()
  for (const [i, s] of specs.entries()) {
    const m = await measure(s)
    runs.push(m)
    opts.onRun?.(m, i)
    if (m.code !== 0 && !opts.keepGoing) break
  }
  return loopResult(runs, performance.now() - started, loadStart)
}

function loopResult(runs: Measured[], wallMs: number, loadStart: number): MeasuredLoop {
  const rss = runs.map((r) => r.peakRssBytes).filter((x): x is number => x !== undefined)
  return {
    runs,
    wallMs,
    peakRssBytes: rss.length ? Math.max(...rss) : undefined,
    cpuS: runs.reduce((a, r) => a + (r.cpuS ?? 0), 0),
    failures: runs.filter((r) => r.code !== 0),
    load: {start: loadStart, end: loadavg()[0]!},
  }
}

/**
 * Run commands `concurrency` at a time, as a user's `xargs -P` would run a peer without a bundle
 * concept image by image. Starts nothing new after a failure.
 */
export async function measurePool(specs: CommandSpec[], concurrency: number): Promise<MeasuredLoop> {
  const runs: Measured[] = []
  const loadStart = loadavg()[0]!
  const started = performance.now()
  let next = 0
  let failed = false
  const worker = async (): Promise<void> => {
    while (!failed && next < specs.length) {
      const m = await measure(specs[next++]!)
      runs.push(m)
      if (m.code !== 0) failed = true
    }
  }
  await Promise.all(Array.from({length: Math.min(concurrency, specs.length)}, worker))
  return loopResult(runs, performance.now() - started, loadStart)
}

/** The last lines of a failed command's output, for a one-paragraph error. */
export function failureText(m: Measured, lines = 5): string {
  const tail = (m.stderr.trim() || m.stdout.trim()).split('\n').slice(-lines).join('\n')
  return `${m.label} exited with ${m.signal ?? m.code}${tail ? `:\n${tail}` : ''}`
}
