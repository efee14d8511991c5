/**
 * Child processes for the sandbox (registries, etcd, the Kubernetes control plane, ...): start one
 * with its output in a log file, stop it (its whole process group), pick free loopback ports and
 * wait for things to become ready. Generic on purpose: every sandbox server goes through here.
 */
import {spawn} from 'node:child_process'
import {closeSync, mkdirSync, openSync} from 'node:fs'
import {open, readFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {KpiError} from '../errors.js'

export interface ProcessSpec {
  /** short name, used for the log file (`<logDir>/<name>.log`) and in errors */
  name: string
  cmd: string
  args: string[]
  /** added to (and overriding) the parent's environment */
  env?: Record<string, string>
  cwd?: string
  logDir: string
  /** how to get `cmd` when it is not there; default: build it with scripts/tools.sh */
  missingHint?: string
}

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Proc {
  name: string
  pid: number
  logFile: string
  /** settles when the process exits, for whatever reason */
  exited: Promise<ExitInfo>
  /** the exit, once it happened; undefined while running */
  exit(): ExitInfo | undefined
  /** SIGTERM to the process group, SIGKILL after `graceMs` (default 5 s); safe to call twice */
  stop(graceMs?: number): Promise<void>
}

/** Process groups still running; killed when this Node process exits so no server outlives a test run. */
const live = new Set<number>()
let exitHookInstalled = false

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch {
    // already gone
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const pid of live) killGroup(pid, 'SIGKILL')
  })
}

/** Starts `cmd` in its own process group with stdout and stderr appended to `<logDir>/<name>.log`. */
export async function startProcess(spec: ProcessSpec): Promise<Proc> {
  mkdirSync(spec.logDir, {recursive: true})
  const logFile = join(spec.logDir, `${spec.name}.log`)
  const fd = openSync(logFile, 'a')
  let child
  try {
    child = spawn(spec.cmd, spec.args, {
      cwd: spec.cwd,
      env: {...process.env, ...spec.env},
      stdio: ['ignore', fd, fd],
      // own process group: stop() reaches whatever the tool itself starts
      detached: true,
    })
  } finally {
    closeSync(fd)
  }
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT'
        ? new KpiError('not-found', `cannot start ${spec.name}: ${spec.cmd} not found`, {hint: spec.missingHint ?? 'run bash scripts/tools.sh', cause: err})
        : new KpiError('failed', `cannot start ${spec.name} (${spec.cmd}): ${err.message}`, {cause: err}))
    })
  })
  const pid = child.pid!
  live.add(pid)
  installExitHook()
  let exitInfo: ExitInfo | undefined
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = {code, signal}
      live.delete(pid)
      resolve(exitInfo)
    })
  })
  // Node keeps no reference to the child: a test process may end while a server runs (exit hook kills it).
  child.unref()

  let stopping: Promise<void> | undefined
  const stop = (graceMs = 5000): Promise<void> => {
    stopping ??= (async () => {
      if (exitInfo) {
        killGroup(pid, 'SIGKILL') // leftovers of the group, if any
        return
      }
      // hold the event loop until the exit is seen, or Node could quit between SIGKILL and SIGCHLD
      child.ref()
      killGroup(pid, 'SIGTERM')
      const timer = sleep(graceMs).then(() => 'timeout' as const)
      if ((await Promise.race([exited, timer])) === 'timeout') {
        killGroup(pid, 'SIGKILL')
        await exited
      }
      killGroup(pid, 'SIGKILL')
    })()
    return stopping
  }
  return {name: spec.name, pid, logFile, exited, exit: () => exitInfo, stop}
}

/** A TCP port free on 127.0.0.1 right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => (port ? resolve(port) : reject(new KpiError('internal', 'no free port on 127.0.0.1'))))
    })
  })
}

/** `n` distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < n) ports.add(await freePort())
  return [...ports]
}

/**
 * The fields of /proc/PID/stat from the third (state) on: [0] state, [1] ppid, [11] utime, [12]
 * stime (clock ticks). The command name before them is in parentheses and may hold spaces and
 * parentheses, so the fields are counted from after the last ')'. Undefined where there is no
 * /proc or the process is gone.
 */
export async function procStat(pid: number): Promise<string[] | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** The last `lines` lines of a log file ('' when it cannot be read). */
export async function tailLog(file: string, lines = 20, maxBytes = 64 * 1024): Promise<string> {
  try {
    const fh = await open(file, 'r')
    try {
      const {size} = await fh.stat()
      const len = Math.min(size, maxBytes)
      const buf = Buffer.alloc(len)
      await fh.read(buf, 0, len, size - len)
      return buf.toString('utf8').split('\n').filter((l) => l.length > 0).slice(-lines).join('\n')
    } finally {
      await fh.close()
    }
  } catch {
    return ''
  }
}

export interface WaitOptions {
  /** what we wait for, named in the timeout error, e.g. `kube-apiserver /readyz` */
  what: string
  timeoutMs: number
  intervalMs?: number
  /** processes whose early exit ends the wait at once (their log is named in the error) */
  procs?: Proc[]
  /** a log file to name in the timeout error when no proc is given */
  logFile?: string
}

/**
 * Calls `fn` until it returns a value other than undefined/false (which is returned), or throws
 * KpiError('timeout') naming `what`, the last error `fn` threw and the log file to read.
 */
export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs
  const interval = opts.intervalMs ?? 250
  let lastErr: unknown
  for (;;) {
    for (const p of opts.procs ?? []) {
      const ex = p.exit()
      if (ex) {
        const how = ex.signal ? `signal ${ex.signal}` : `code ${ex.code}`
        const tail = await tailLog(p.logFile, 5)
        throw new KpiError('failed', `${p.name} exited (${how}) while waiting for ${opts.what}`, {
          hint: `read ${p.logFile}`,
          details: {log: p.logFile, tail},
        })
      }
    }
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
      lastErr = undefined
    } catch (e) {
      lastErr = e
    }
    if (Date.now() >= deadline) {
      const logs = opts.procs?.map((p) => p.logFile) ?? (opts.logFile ? [opts.logFile] : [])
      const last = lastErr instanceof Error ? ` (last error: ${lastErr.message.split('\n')[0]})` : ''
      throw new KpiError('timeout', `timed out after ${formatMs(opts.timeoutMs)} waiting for ${opts.what}${last}`, {
        hint: logs.length ? `read ${logs.join(', ')}` : undefined,
        cause: lastErr,
      })
    }
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())))
  }
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)}s` : `${ms}ms`
}
