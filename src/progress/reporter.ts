/**
 * Shows progress of a core operation: listr2 in a terminal, plain lines otherwise, JSON lines
 * on stderr with --json (stdout then carries only the result document).
 */
import {Listr} from 'listr2'
import type {OnEvent, ProgressEvent} from './events.js'

export type ProgressMode = 'tty' | 'plain' | 'json' | 'silent'

export function progressMode(flags: {json?: boolean}, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (flags.json) return 'json'
  return stream.isTTY && !process.env.CI ? 'tty' : 'plain'
}

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
      if (e.type !== 'bytes') err.write(JSON.stringify({event: e}) + '\n')
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
