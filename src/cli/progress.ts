/**
 * Shows progress of a core operation: listr2 in a terminal, plain lines otherwise, JSON lines
 * on stderr with --json (stdout then carries only the result document).
 */
import {Listr} from 'listr2'
import type {OnEvent, ProgressEvent} from '../progress/events.js'

export type ProgressMode = 'tty' | 'plain' | 'json' | 'silent'

export function progressMode(flags: {json?: boolean}, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (flags.json) return 'json'
  // a terminal that cannot move the cursor gets the plain lines a pipe gets
  return stream.isTTY && !process.env.CI && process.env.TERM !== 'dumb' ? 'tty' : 'plain'
}

/**
 * The version of the JSON event stream (docs/json.md): every line kpi writes to stderr with
 * --json is `{"v": EVENTS_VERSION, "event": {...}}`. Fields may be added within a version; a
 * change that removes or renames one makes a new version.
 */
export const EVENTS_VERSION = 1

/** One line of the JSON event stream. */
export const jsonEventLine = (e: ProgressEvent): string => `${JSON.stringify({v: EVENTS_VERSION, event: e})}\n`

/** Tallies byte and blob events into one status line. */
export function createTally() {
  let bytes = 0
  const blobs = {copied: 0, skipped: 0, mounted: 0}
  const images = new Set<string>()
  const started = Date.now()
  return {
    add(e: ProgressEvent) {
      if (e.type === 'bytes') bytes += e.bytes
      else if (e.type === 'blob') blobs[e.action]++
      else if (e.type === 'image-done') images.add(e.image)
    },
    line(total?: number): string {
      const secs = Math.max(0.001, (Date.now() - started) / 1000)
      const rate = `${formatBytes(bytes / secs)}/s`
      const of = total ? ` / ${formatBytes(total)}` : ''
      return `${formatBytes(bytes)}${of} moved at ${rate} · blobs ${blobs.copied} copied, ${blobs.mounted} mounted, ${blobs.skipped} skipped`
    },
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

export function describeEvent(e: ProgressEvent): string | undefined {
  switch (e.type) {
    case 'phase': return `${e.phase}${e.message ? `: ${e.message}` : ''}`
    case 'stage-start': return `stage ${e.stage}${e.message ? `: ${e.message}` : ''}`
    case 'stage-done': return `stage ${e.stage} done${e.message ? `: ${e.message}` : ''}`
    case 'task': return `  ${e.task}: ${e.status}${e.message ? ` (${e.message})` : ''}`
    case 'image-done': return `  image ${e.image} ${e.digest}`
    case 'warning': return `warning: ${e.message}`
    case 'info': return e.message
    default: return undefined
  }
}

/**
 * Run `op` with progress shown in the given mode. Warnings are always printed. In tty mode a
 * listr2 task shows the latest stage lines and the byte tally under the title.
 */
export async function withProgress<T>(mode: ProgressMode, title: string, op: (onEvent: OnEvent) => Promise<T>, opts: {totalBytes?: () => number | undefined} = {}): Promise<T> {
  const err = process.stderr
  const tally = createTally()
  if (mode === 'silent') return op(() => {})
  if (mode === 'json') {
    return op((e) => {
      tally.add(e)
      if (e.type !== 'bytes') err.write(jsonEventLine(e))
    })
  }
  if (mode === 'plain') {
    err.write(`${title}\n`)
    let last = 0
    const result = await op((e) => {
      tally.add(e)
      const line = describeEvent(e)
      if (line) err.write(line + '\n')
      if (e.type === 'bytes' && Date.now() - last > 5000) {
        last = Date.now()
        err.write(`  ${tally.line(opts.totalBytes?.())}\n`)
      }
    })
    return result
  }
  let result: T | undefined
  const recent: string[] = []
  const tasks = new Listr([
    {
      title,
      task: async (_ctx, task) => {
        let last = 0
        const show = () => {
          task.output = [...recent.slice(-6), tally.line(opts.totalBytes?.())].join('\n')
        }
        result = await op((e) => {
          tally.add(e)
          const line = describeEvent(e)
          if (e.type === 'warning') task.stdout().write(`${line}\n`)
          if (line) recent.push(line.trim())
          if (Date.now() - last > 100) {
            last = Date.now()
            show()
          }
        })
      },
      rendererOptions: {bottomBar: 7, persistentOutput: false},
    },
  ], {rendererOptions: {collapseErrors: false}, exitOnError: true})
  await tasks.run()
  return result as T
}

export interface StageInfo {
  name: string
  title: string
}

function deferred(): {promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void} {
  let resolve!: () => void
  let reject!: (e: unknown) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  promise.catch(() => {})
  return {promise, resolve, reject}
}

const taskMark = {start: '…', done: '✔', failed: '✖', skipped: '↓'} as const

/**
 * Like withProgress, for an operation that runs in known stages (install, upgrade): in a terminal,
 * one listr2 task per stage, each showing its nested tasks (`task` events of that stage) with their
 * state; `stage-start`/`stage-done` events move from one stage to the next. Plain and JSON modes
 * are those of withProgress. Warnings are printed again after the stages, so they stay on screen.
 */
export async function withStagedProgress<T>(mode: ProgressMode, title: string, stages: StageInfo[], op: (onEvent: OnEvent) => Promise<T>): Promise<T> {
  if (mode !== 'tty') return withProgress(mode, title, op)
  const err = process.stderr
  const done = new Map(stages.map((s) => [s.name, deferred()]))
  const lines = new Map<string, Map<string, string>>(stages.map((s) => [s.name, new Map()]))
  const outputs = new Map<string, (text: string) => void>()
  const finish = new Map<string, (message?: string) => void>()
  const warnings: string[] = []
  let current: string | undefined
  const show = (stage: string) => {
    const ls = [...(lines.get(stage)?.values() ?? [])]
    outputs.get(stage)?.(ls.slice(-8).join('\n'))
  }
  const onEvent: OnEvent = (e) => {
    if (e.type === 'stage-start') {
      current = e.stage
      show(e.stage)
    } else if (e.type === 'stage-done') {
      // a finished stage keeps one line: its title and what it did
      finish.get(e.stage)?.(e.message)
      done.get(e.stage)?.resolve()
    } else if (e.type === 'task') {
      const stage = e.stage ?? current
      if (!stage) return
      lines.get(stage)?.set(e.task, `${taskMark[e.status]} ${e.task}${e.message ? `: ${e.message}` : ''}`)
      show(stage)
    } else if (e.type === 'warning' || e.type === 'info') {
      if (e.type === 'warning') warnings.push(e.message)
      if (current) {
        lines.get(current)?.set(`${e.type}:${e.message}`, `${e.type === 'warning' ? '⚠' : 'ℹ'} ${e.message}`)
        show(current)
      }
    }
  }
  let result: T | undefined
  let failure: {error: unknown} | undefined
  const running = op(onEvent).then(
    (r) => {
      result = r
      // stages the operation had no need to announce end with it
      for (const d of done.values()) d.resolve()
    },
    (e) => {
      failure = {error: e}
      for (const d of done.values()) d.reject(e)
    },
  )
  const tasks = new Listr(
    stages.map((s) => ({
      title: s.title,
      task: async (_ctx: unknown, task: {output: string; title: string}) => {
        outputs.set(s.name, (text) => {
          task.output = text
        })
        finish.set(s.name, (message) => {
          task.title = message ? `${s.title}: ${message}` : s.title
          task.output = ''
        })
        await done.get(s.name)!.promise
      },
      rendererOptions: {persistentOutput: true, bottomBar: Infinity},
    })),
    {concurrent: false, exitOnError: true, rendererOptions: {collapseErrors: false, formatOutput: 'wrap'}},
  )
  err.write(`${title}\n`)
  try {
    await tasks.run()
  } catch {
    // the operation's own error is the one to report
  }
  await running
  if (warnings.length) for (const w of warnings) err.write(`warning: ${w}\n`)
  if (failure) throw failure.error
  return result as T
}
