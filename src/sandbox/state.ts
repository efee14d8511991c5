/** DIR/state.json of a `kpi sandbox up` sandbox: the supervisor's pid and where it stands. */
import {readFile, rename, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {ErrorKind} from '../errors.js'

export interface SandboxState {
  pid: number
  state: 'starting' | 'ready' | 'failed' | 'stopped'
  startedAt: string
  /** time from start to ready */
  readyMs?: number
  message?: string
  /** with 'failed': the error's kind and hint, so `up` can say what to do (e.g. build a missing tool) */
  kind?: ErrorKind
  hint?: string
  podCidr?: string
  missingPrograms?: string[]
}

export const stateFile = (dir: string): string => join(dir, 'state.json')

export async function writeState(dir: string, s: SandboxState): Promise<void> {
  // whole or not at all: `up` polls this file while the supervisor writes it
  const tmp = `${stateFile(dir)}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(s, null, 2) + '\n')
  await rename(tmp, stateFile(dir))
}

export async function readState(dir: string): Promise<SandboxState | undefined> {
  try {
    return JSON.parse(await readFile(stateFile(dir), 'utf8')) as SandboxState
  } catch {
    return undefined
  }
}
