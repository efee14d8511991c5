/**
 * Where a kpi operation's time goes, from its `--json` event stream (stderr lines, each stamped
 * by the benchmark when it arrived): process start-up (until the first event), preflight, each
 * stage split into apply (its `apply N objects` task) and gate (the rest of the stage), the gaps
 * between stages (revision record writes, lease), prune, and the tail after the last event
 * (final record write, superseding, history, exit). Nothing inside kpi is instrumented: what a
 * user's process shows is what is measured.
 */
export interface Line {
  /** ms since the process was started */
  ms: number
  text: string
}

interface Ev {
  type: string
  stage?: string
  task?: string
  status?: string
}

/** ms per phase, in the order they happened; a stage that ran twice (automatic rollback) gets `#2`. */
export type Phases = Record<string, number>

export function phasesOf(lines: Line[], totalMs: number): Phases {
  const evs: Array<{ms: number; e: Ev}> = []
  for (const l of lines) {
    if (!l.text.startsWith('{"v":')) continue
    try {
      evs.push({ms: l.ms, e: (JSON.parse(l.text) as {event: Ev}).event})
    } catch {
      // not an event line
    }
  }
  const out: Phases = {}
  const add = (k: string, ms: number) => {
    let key = k
    for (let i = 2; key in out; i++) key = `${k}#${i}`
    out[key] = Math.max(0, ms)
  }
  if (!evs.length) {
    add('total (no events)', totalMs)
    return out
  }
  add('start-up', evs[0]!.ms)
  let last = evs[0]!.ms
  let open: {stage: string; at: number; applied?: number; lastTask?: number} | undefined
  for (const {ms, e} of evs) {
    if (e.type === 'stage-start' && e.stage) {
      // a stage that failed (the automatic rollback starts next): its time up to the next start
      if (open) add(`${open.stage} (failed)`, ms - open.at)
      else add('between', ms - last)
      open = {stage: e.stage, at: ms}
    } else if (e.type === 'task' && open) {
      if (e.status === 'done' && e.task?.startsWith('apply ')) open.applied = ms
      open.lastTask = ms
    } else if (e.type === 'stage-done' && open && e.stage === open.stage) {
      if (open.applied !== undefined) {
        add(`${open.stage} apply`, open.applied - open.at)
        add(`${open.stage} gate`, open.lastTask! - open.applied)
        // after its last task and before it is said done, a stage's end is recorded
        add('between', ms - open.lastTask!)
      } else {
        add(open.stage, ms - open.at)
      }
      open = undefined
      last = ms
    }
  }
  if (open) add(`${open.stage} (unfinished)`, totalMs - open.at)
  add('tail', totalMs - (open ? totalMs : last))
  // the gaps between stages and after each stage's last task are the record writes: one number
  const between = Object.entries(out).filter(([k]) => k.startsWith('between')).reduce((s, [, v]) => s + v, 0)
  for (const k of Object.keys(out)) if (k.startsWith('between')) delete out[k]
  out['records between stages'] = between
  return out
}

/** Medians per phase over several runs (a phase missing from a run counts as 0 there). */
export function medianPhases(runs: Phases[]): Phases {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r)))]
  const out: Phases = {}
  for (const k of keys) {
    const xs = runs.map((r) => r[k] ?? 0).sort((a, b) => a - b)
    out[k] = xs[Math.floor(xs.length / 2)]!
  }
  return out
}

export const formatPhases = (p: Phases): string => Object.entries(p).map(([k, v]) => `${k} ${(v / 1000).toFixed(2)}`).join(', ')
