/**
 * The node and pod lifecycle stages KWOK runs by (tools.sh keeps KWOK's own beside its binary).
 * When the pod runner runs real programs, readiness must be real too, as a kubelet's readiness
 * probe makes it: KWOK's pod-ready stage then starts pods Running but not Ready, and the runner
 * (podready.ts) marks each pod Ready once its program listens, or at once for pods it does not run.
 */
import {readdirSync} from 'node:fs'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {basename, join} from 'node:path'
import {KpiError} from '../errors.js'
import {toolHome} from './tools.js'

function shippedStages(): string[] {
  const dir = join(toolHome('kwok'), 'stages')
  let files: string[] = []
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(dir, f))
  } catch {
    // reported below
  }
  if (files.length === 0) {
    throw new KpiError('not-found', `no KWOK stages in ${dir}`, {hint: 'remove that kwok directory and run bash scripts/tools.sh'})
  }
  return files
}

/** `text` with `from` replaced by `to`, which must occur exactly once (the stage is pinned with KWOK). */
function replaceOnce(text: string, from: RegExp, to: string, file: string): string {
  const n = [...text.matchAll(new RegExp(from.source, 'g'))].length
  if (n !== 1) throw new KpiError('internal', `${file}: expected one ${from} in KWOK's pod-ready stage, found ${n}`, {hint: 'the KWOK version changed: update src/sandbox/kwok-stages.ts'})
  return text.replace(from, to)
}

/** KWOK's pod-ready stage, with the Ready and ContainersReady conditions and containers' ready left false. */
export function notReadyStage(text: string, file = 'pod-ready.yaml'): string {
  let out = replaceOnce(text, /status: "True"\n(\s+)type: Ready\n/, 'status: "False"\n$1type: Ready\n', file)
  out = replaceOnce(out, /status: "True"\n(\s+)type: ContainersReady\n/, 'status: "False"\n$1type: ContainersReady\n', file)
  // the first `ready: true` is in the range over .spec.containers (init containers come after)
  return replaceOnce(out, /(range \.spec\.containers \}\}[\s\S]*?)ready: true/, '$1ready: false', file)
}

/** The stage files to give KWOK; with `runnerReadiness`, pod-ready is rewritten into `dir`. */
export async function kwokStages(runnerReadiness: boolean, dir: string): Promise<string[]> {
  const files = shippedStages()
  if (!runnerReadiness) return files
  await mkdir(dir, {recursive: true})
  const out: string[] = []
  for (const f of files) {
    if (basename(f) !== 'pod-ready.yaml') {
      out.push(f)
      continue
    }
    const rewritten = join(dir, 'pod-ready.yaml')
    await writeFile(rewritten, notReadyStage(await readFile(f, 'utf8'), f))
    out.push(rewritten)
  }
  return out
}
