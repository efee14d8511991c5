/**
 * Applies a platform stage by stage (stage.ts: decide, apply, gate), and only once every stage is
 * healthy deletes what the previous revision had and this one does not, in reverse stage order
 * (teams' objects before builders, builders before stacks, ...), waiting for each to be gone. A
 * failure stops at the failing stage and deletes nothing: the previous revision's objects are all
 * still there for a rollback.
 */
import {KpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import {waitUntil} from '../kube/wait.js'
import {decideDeletion, type Change, type StaleObject} from './changeset.js'
import {INSTALL_STAGES, type PlannedStage} from './plan.js'
import {runStage, type StageResult, type StageRunOptions} from './stage.js'

export const PRUNE_STAGE = {name: 'prune', title: 'Delete what the new revision no longer has'}

export interface ExecuteOptions extends StageRunOptions {
  /** called before a stage is applied and after it is healthy (the operation records both) */
  onStage?: (stage: PlannedStage, status: 'applying' | 'ready', result?: StageResult) => Promise<void>
}

export interface ExecuteResult {
  stages: StageResult[]
  /** deleted, `Kind ns/name` */
  pruned: string[]
  /** left in place on purpose, with why */
  kept: string[]
}

export async function execute(stages: PlannedStage[], stale: StaleObject[], o: ExecuteOptions): Promise<ExecuteResult> {
  const results: StageResult[] = []
  const fresh = o.fresh ?? new Set<string>()
  for (const stage of stages) {
    // recorded before it is said: a kill after the event finds the stage in the record
    await o.onStage?.(stage, 'applying')
    o.onEvent({type: 'stage-start', stage: stage.name, message: stage.title})
    const r = await runStage(stage, {...o, fresh})
    results.push(r)
    await o.onStage?.(stage, 'ready', r)
    const changed = r.changes.filter((c) => c.action !== 'unchanged').length
    o.onEvent({type: 'stage-done', stage: stage.name, message: `${r.objects} object${r.objects === 1 ? '' : 's'}, ${changed} changed${r.notChecked.length ? `; kpack readiness not checked for ${r.notChecked.length}` : ''}`})
  }
  const {pruned, kept} = await prune(stale, o)
  return {stages: results, pruned, kept}
}

async function prune(stale: StaleObject[], o: ExecuteOptions): Promise<{pruned: string[]; kept: string[]}> {
  const kept = stale.filter((s) => s.kept).map((s) => `${s.object.kind} ${s.object.metadata.namespace ? `${s.object.metadata.namespace}/` : ''}${s.object.metadata.name}: ${s.kept}`)
  for (const k of kept) o.onEvent({type: 'info', message: `kept ${k}`})
  const order = INSTALL_STAGES.map((s) => s.name).reverse()
  const todo = stale.filter((s) => !s.kept).sort((a, b) => order.indexOf(a.stage) - order.indexOf(b.stage))
  const pruned: string[] = []
  if (!todo.length) return {pruned, kept}
  o.onEvent({type: 'stage-start', stage: PRUNE_STAGE.name, message: PRUNE_STAGE.title})
  const deadline = Date.now() + o.timeoutMs
  for (const s of todo) {
    o.signal?.throwIfAborted()
    const c = await decideDeletion(o.kube, s)
    if (!c) continue
    o.onEvent({type: 'task', stage: PRUNE_STAGE.name, task: `delete ${c.object}`, status: 'start'})
    await o.kube.delete(c.ref)
    await gone(o.kube, c, deadline)
    o.onEvent({type: 'task', stage: PRUNE_STAGE.name, task: `delete ${c.object}`, status: 'done'})
    pruned.push(c.object)
  }
  o.onEvent({type: 'stage-done', stage: PRUNE_STAGE.name, message: `${pruned.length} deleted`})
  return {pruned, kept}
}

/** Waits until the API server no longer has the object (finalizers done), polling as the gates do. */
async function gone(kube: Kube, c: Change, deadline: number): Promise<void> {
  const w = await waitUntil(async () => ({readiness: (await kube.get(c.ref)) ? {state: 'progressing', message: 'still there'} : {state: 'ready', message: 'deleted'}}), {timeoutMs: Math.max(0, deadline - Date.now())})
  if (w.outcome !== 'ready') throw new KpiError('timeout', `prune: ${c.object} is still there after it was deleted (a finalizer holds it)`, {hint: 'see its metadata.finalizers; kpi status shows the revision'})
}
