/**
 * `kpi sandbox up` and `kpi sandbox down`: the sandbox as a long-running thing, like
 * `kind create cluster`. `up` starts a detached supervisor (supervisor.ts) and returns once it
 * reports ready; `down` stops it and sweeps up whatever a supervisor that was killed outright
 * left behind (its servers, its pods' network namespaces). Both are safe to repeat.
 */
import {spawn} from 'node:child_process'
import {closeSync, openSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {mkdir, readdir, readFile, rm, stat} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {KpiError} from '../errors.js'
import {nodeScriptArgs} from './node-script.js'
import {alive, releaseDeadOwnerSubnet} from './podnet.js'
import {procStat, tailLog} from './procs.js'
import {readState, type SandboxState} from './state.js'

export interface SandboxUpResult {
  dir: string
  envFile: string
  valuesFile: string
  state: SandboxState
  /** false when a sandbox was already running in dir */
  started: boolean
}

/**
 * Whether the supervisor that state.json names still runs. The pid alone does not say so: after
 * the supervisor died (killed, a crash, a reboot) the system may give its pid to any process, and
 * `down` would signal that one. Only a process that is dir's supervisor counts.
 */
function supervisorRunning(s: SandboxState | undefined, dir: string): s is SandboxState {
  if (!s || !alive(s.pid)) return false
  try {
    const args = readFileSync(`/proc/${s.pid}/cmdline`, 'utf8').split('\0')
    return args.some((a) => /sandbox-supervisor\.[jt]s$/.test(a)) && args.includes(dir)
  } catch {
    return false // gone meanwhile
  }
}

/**
 * One `up` at a time per directory. Between reading state.json and the new supervisor writing
 * 'starting' there is no state to see: two `up`s started together both went on, the second removed
 * the first's run directory under its starting registries, and the first's cleanup SIGKILLed the
 * second (its command line names dir); both failed. The loser now gets a conflict at once.
 */
function lockUp(dir: string): () => void {
  const file = join(dir, 'up.lock')
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, {flag: 'wx'})
      return () => rmSync(file, {force: true})
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    let owner = NaN
    try {
      owner = Number.parseInt(readFileSync(file, 'utf8'), 10)
    } catch {
      // removed meanwhile: try again
    }
    // an empty lock is being written by its owner right now
    if (attempt >= 2 || !(owner > 0) || alive(owner)) {
      throw new KpiError('conflict', `another kpi sandbox up is starting a sandbox in ${dir}${owner > 0 ? ` (pid ${owner})` : ''}`, {
        hint: `wait for it; if no kpi runs, remove ${file}`,
      })
    }
    // left by an up that was killed
    rmSync(file, {force: true})
  }
}

export async function sandboxUp(dirArg: string, opts: {timeoutMs?: number; signal?: AbortSignal} = {}): Promise<SandboxUpResult> {
  const dir = resolve(dirArg)
  await mkdir(dir, {recursive: true})
  const unlock = lockUp(dir)
  try {
    return await up(dir, opts)
  } finally {
    unlock()
  }
}

async function up(dir: string, opts: {timeoutMs?: number; signal?: AbortSignal}): Promise<SandboxUpResult> {
  const files = {envFile: join(dir, 'env'), valuesFile: join(dir, 'values.yaml')}
  const prev = await readState(dir)
  if (supervisorRunning(prev, dir) && prev.state === 'ready') return {dir, ...files, state: prev, started: false}
  if (supervisorRunning(prev, dir)) {
    throw new KpiError('conflict', `a sandbox is ${prev.state} in ${dir} (pid ${prev.pid})`, {hint: `wait for it, or run kpi sandbox down --dir ${dir}`})
  }
  // leftovers of a supervisor that died without cleaning up
  if (prev) await sandboxDown(dir)
  // a fresh sandbox every time: an old run's etcd data and certificates would not fit new ports;
  // but a run/ with no sandbox state beside it is not one a sandbox made (--dir ~ holds ~/run)
  if (!prev && (await stat(join(dir, 'run')).catch(() => undefined))) {
    throw new KpiError('usage', `--dir ${dir} holds a run/ that no sandbox made (no state.json beside it), and up would delete it`, {hint: 'give a new or empty directory for the sandbox'})
  }
  await rm(join(dir, 'run'), {recursive: true, force: true})
  await mkdir(dir, {recursive: true})
  const log = join(dir, 'supervisor.log')
  const fd = openSync(log, 'a')
  let child
  try {
    child = spawn(process.execPath, [...nodeScriptArgs(import.meta.url, 'cli/sandbox-supervisor'), dir], {
      detached: true, stdio: ['ignore', fd, fd], env: process.env,
    })
  } finally {
    closeSync(fd)
  }
  child.unref()
  const pid = child.pid!
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000)
  for (;;) {
    // Ctrl-C while waiting: the supervisor is detached (it must outlive a successful up), so the
    // terminal's SIGINT never reached it and it went on to start a sandbox nobody asked for
    if (opts.signal?.aborted) {
      await sandboxDown(dir)
      throw new KpiError('interrupted', `interrupted: the sandbox that was starting in ${dir} is stopped`)
    }
    // liveness before the state: a supervisor that fails writes why, then exits, so the state read
    // after seeing it gone holds the reason
    const gone = !alive(pid)
    const s = await readState(dir)
    if (s?.pid === pid && s.state === 'ready') return {dir, ...files, state: s, started: true}
    if (s?.pid === pid && s.state === 'failed') {
      await sandboxDown(dir)
      // the failure's own kind and hint (a tool not built: run bash scripts/tools.sh), then the logs
      throw new KpiError(s.kind ?? 'failed', `the sandbox did not start: ${s.message}`, {
        hint: [s.hint, `read ${log} and the logs under ${join(dir, 'run')}`].filter(Boolean).join('; '),
      })
    }
    if (gone) {
      await sandboxDown(dir)
      const tail = (await tailLog(log, 3)).replace(/\n/g, ' | ')
      throw new KpiError('failed', `the sandbox supervisor exited while starting${tail ? `: ${tail}` : ''}`, {hint: `read ${log}`})
    }
    if (Date.now() > deadline) {
      await sandboxDown(dir)
      throw new KpiError('timeout', `the sandbox did not become ready in ${Math.round((opts.timeoutMs ?? 600_000) / 1000)}s`, {hint: `read ${log}`})
    }
    await sleep(250, undefined, {signal: opts.signal}).catch(() => {})
  }
}

/**
 * This process and its ancestors. Their command lines name dir too when kpi runs under a wrapper
 * (`sudo kpi sandbox down --dir DIR`, as the sandbox needs root; `timeout 900 kpi sandbox up ...`):
 * the sweep killed the wrapper, and the user's shell saw `Killed`, exit 137.
 */
async function selfAndAncestors(): Promise<Set<number>> {
  const out = new Set<number>()
  for (let pid = process.pid; pid > 1 && !out.has(pid);) {
    out.add(pid)
    const ppid = Number((await procStat(pid))?.[1])
    if (!Number.isInteger(ppid)) break
    pid = ppid
  }
  return out
}

/**
 * An argument that is dir, a path under it, or a flag's value that is (`--data-dir=DIR/run/...`).
 * Anchored: a mere substring also matched `/var/tmp/X/...` for dir `/tmp/X`, another sandbox's.
 */
function namesPathUnder(arg: string, dir: string): boolean {
  const value = arg.startsWith('-') && arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : arg
  return value === dir || value.startsWith(`${dir}/`)
}

/** Processes whose command line names a path under dir: what the sandbox started there, but `spare`. */
async function processesUnder(dir: string, spare: ReadonlySet<number>): Promise<number[]> {
  const out: number[] = []
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || spare.has(pid)) continue
    try {
      const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
      if (args.some((a) => namesPathUnder(a, dir))) out.push(pid)
    } catch {
      // gone meanwhile
    }
  }
  return out
}

export interface SandboxDownResult {
  /** a running supervisor was stopped */
  stopped: boolean
  /** leftover processes killed after it */
  swept: number
}

export async function sandboxDown(dirArg: string, opts: {graceMs?: number} = {}): Promise<SandboxDownResult> {
  const dir = resolve(dirArg)
  const s = await readState(dir)
  let stopped = false
  if (supervisorRunning(s, dir)) {
    try {
      process.kill(s.pid, 'SIGTERM')
    } catch (e) {
      // up needs root, down run without it: a raw 'kill EPERM' said nothing of that
      if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e
      throw new KpiError('usage', `the sandbox in ${dir} runs as another user (supervisor pid ${s.pid}), which this user may not stop`, {
        hint: 'run kpi sandbox down as the user that ran kpi sandbox up (e.g. with sudo)',
      })
    }
    const deadline = Date.now() + (opts.graceMs ?? 60_000)
    while (alive(s.pid) && Date.now() < deadline) await sleep(200)
    if (alive(s.pid)) process.kill(s.pid, 'SIGKILL')
    stopped = true
  }
  // until none is left: a killed process is listed until it has exited, and an orphan of a dead
  // supervisor (a pod runner) may start another while the first are killed
  const swept = new Set<number>()
  const spare = await selfAndAncestors()
  const deadline = Date.now() + 10_000
  for (let left = await processesUnder(dir, spare); left.length && Date.now() < deadline; left = await processesUnder(dir, spare)) {
    for (const pid of left) {
      swept.add(pid)
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    await sleep(50)
  }
  if (s?.podCidr) await releaseDeadOwnerSubnet(Number(s.podCidr.split('.')[2]), s.pid)
  return {stopped, swept: swept.size}
}
