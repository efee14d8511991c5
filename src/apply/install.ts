/**
 * kpi install: preflight, then the install stages in order (plan.ts), each applied and waited for
 * (stage.ts), with the revision record (src/revision) written pending-install before the first
 * object and deployed (or failed) at the end. Running it again with the same inputs changes
 * nothing; running it after an install was killed resumes that install's revision.
 */
import type {Bundle} from '../bundle/types.js'
import {KpiError, isKpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import type {OciClientOptions, RegistryClient} from '../oci/index.js'
import type {OnEvent} from '../progress/events.js'
import {renderPlatform} from '../render/render.js'
import type {RenderResult} from '../render/types.js'
import type {Values} from '../values/types.js'
import {inputsDigest, redactObjects, redactValues, type RevisionRecord, type StageRecord, type WaitMode} from '../revision/record.js'
import {createRevision, ensureRevisionNamespace, saveRevision, type StoredRevision} from '../revision/store.js'
import {planStages, type PlannedStage} from './plan.js'
import {preflight, type InstallMode} from './preflight.js'
import {runStage, type ObjectChange, type StageResult} from './stage.js'

export const DEFAULT_STAGE_TIMEOUT_MS = 5 * 60_000

export interface InstallOptions {
  kube: Kube
  lock: Bundle
  values: Values
  /** rendered already (the command may have); rendered here when absent */
  render?: RenderResult
  wait: WaitMode
  /** per stage */
  timeoutMs?: number
  adopt?: boolean
  kpiVersion: string
  /** registry settings for the preflight image check (CA, plain HTTP); credentials come from the values */
  registryOptions?: OciClientOptions
  registryClient?: RegistryClient
  onEvent: OnEvent
  signal?: AbortSignal
  now?: () => Date
}

export interface InstallResult {
  name: string
  version: string
  kpackVersion: string
  revision: number
  mode: InstallMode
  serverVersion: string
  stages: Array<{name: string; title: string; objects: number; changed: number; durationMs: number}>
  objects: {total: number; created: number; changed: number; unchanged: number}
  /** every object created or changed, `Kind namespace/name` */
  changedObjects: ObjectChange[]
  /** fields taken over from other field managers */
  conflicts: string[]
  /** `checked`, or `not-checked` with --wait=applied, listing the kpack resources not checked */
  kpackReadiness: {checked: boolean; notChecked: string[]}
  warnings: string[]
  durationMs: number
}

export const PREFLIGHT_STAGE = {name: 'preflight', title: 'Preflight: cluster, installation, permissions, images'}

/** The stages install reports progress for, in order (preflight first). */
export function installStageTitles(render: RenderResult): Array<{name: string; title: string}> {
  return [PREFLIGHT_STAGE, ...planStages(render.objects).map((s) => ({name: s.name, title: s.title}))]
}

export async function install(o: InstallOptions): Promise<InstallResult> {
  const started = Date.now()
  const now = () => (o.now?.() ?? new Date()).toISOString()
  const {kube, onEvent} = o
  const render = o.render ?? renderPlatform(o.lock, o.values)
  const warnings = [...render.warnings]
  for (const w of render.warnings) onEvent({type: 'warning', message: w})
  const stages = planStages(render.objects)
  const redacted = redactValues(o.values)
  const objects = redactObjects(render.objects)
  const digest = inputsDigest(o.lock, redacted.values, objects)

  onEvent({type: 'stage-start', stage: PREFLIGHT_STAGE.name, message: PREFLIGHT_STAGE.title})
  const pre = await preflight({
    kube, objects: render.objects, registry: o.values.registry, inputsDigest: digest, adopt: o.adopt ?? false,
    clientOptions: o.registryOptions ?? {}, client: o.registryClient, onEvent,
  })
  onEvent({type: 'stage-done', stage: PREFLIGHT_STAGE.name, message: `Kubernetes ${pre.serverVersion}, ${pre.images} images present`})
  if (pre.mode === 'adopt') {
    const msg = `adopting objects kpi did not create: ${pre.adopted.join(', ')}`
    warnings.push(msg)
    onEvent({type: 'warning', message: msg})
  }
  const webhookNote = webhookPolicyNote(o.values)
  if (webhookNote) onEvent({type: 'info', message: webhookNote})

  const stageRecords: StageRecord[] = stages.map((s) => ({name: s.name, status: 'pending', objects: s.objects.length, changed: 0}))
  const record: RevisionRecord = {
    apiVersion: 'kpi.dev/v1alpha1',
    kind: 'Revision',
    name: o.lock.metadata.name,
    version: o.lock.metadata.version,
    kpackVersion: o.lock.kpack.version,
    revision: pre.existing?.record.revision ?? 1,
    operation: 'install',
    // a reconcile keeps the deployed revision as it is: same inputs
    status: pre.mode === 'reconcile' ? 'deployed' : 'pending-install',
    kpiVersion: o.kpiVersion,
    startedAt: pre.mode === 'reconcile' ? pre.existing!.record.startedAt : now(),
    updatedAt: now(),
    wait: o.wait,
    inputsDigest: digest,
    lock: o.lock,
    values: redacted.values,
    redactedFields: redacted.redactedFields,
    objects,
    stages: stageRecords,
  }

  // A reconcile writes no record unless something had drifted: same inputs, same revision.
  let stored: StoredRevision | undefined
  if (pre.mode !== 'reconcile') {
    await ensureRevisionNamespace(kube)
    stored = pre.existing ? await saveRevision(kube, pre.existing, record) : await createRevision(kube, record)
  }
  const save = async (patch: Partial<RevisionRecord>) => {
    Object.assign(record, patch, {updatedAt: now()})
    if (stored) stored = await saveRevision(kube, stored, record)
  }

  const results: StageResult[] = []
  let current: PlannedStage | undefined
  try {
    for (const stage of stages) {
      current = stage
      const rec = stageRecords.find((s) => s.name === stage.name)!
      rec.startedAt = now()
      rec.status = 'applying'
      onEvent({type: 'stage-start', stage: stage.name, message: stage.title})
      const r = await runStage(stage, {kube, wait: o.wait, timeoutMs: o.timeoutMs ?? DEFAULT_STAGE_TIMEOUT_MS, onEvent, force: pre.mode === 'adopt', signal: o.signal})
      results.push(r)
      rec.status = 'ready'
      rec.finishedAt = now()
      rec.changed = r.changes.filter((c) => c.action !== 'unchanged').length
      if (r.notChecked.length) rec.message = `kpack readiness not checked (--wait=applied): ${r.notChecked.join(', ')}`
      const changed = rec.changed
      onEvent({type: 'stage-done', stage: stage.name, message: `${r.objects} object${r.objects === 1 ? '' : 's'}, ${changed} changed${r.notChecked.length ? `; kpack readiness not checked for ${r.notChecked.length}` : ''}`})
      if (stored) await save({})
    }
  } catch (e) {
    const rec = current && stageRecords.find((s) => s.name === current!.name)
    const message = e instanceof Error ? e.message : String(e)
    if (rec) {
      rec.status = 'failed'
      rec.finishedAt = now()
      rec.message = message
    }
    if (current) onEvent({type: 'task', stage: current.name, task: current.title, status: 'failed', message})
    // Record the failure; if that fails too (cluster gone), the original error is what matters. A
    // reconcile leaves the deployed record alone: `kpi status` reports what is unhealthy now.
    if (pre.mode !== 'reconcile') await save({status: 'failed', message, finishedAt: now()}).catch(() => {})
    throw isKpiError(e) ? e : new KpiError('failed', message, {cause: e})
  }
  if (pre.mode !== 'reconcile') await save({status: 'deployed', message: undefined, finishedAt: now()})
  else if (results.some((r) => r.changes.some((c) => c.action !== 'unchanged'))) {
    // drift a reconcile corrected is recorded: the revision says when and what was re-applied
    stored = pre.existing
    await save({})
  }

  const all = results.flatMap((r) => r.changes)
  const count = (a: string) => all.filter((c) => c.action === a).length
  const notChecked = results.flatMap((r) => r.notChecked)
  return {
    name: record.name,
    version: record.version,
    kpackVersion: record.kpackVersion,
    revision: record.revision,
    mode: pre.mode,
    serverVersion: pre.serverVersion,
    stages: results.map((r) => ({name: r.name, title: stages.find((s) => s.name === r.name)!.title, objects: r.objects, changed: r.changes.filter((c) => c.action !== 'unchanged').length, durationMs: r.durationMs})),
    objects: {total: all.length, created: count('created'), changed: count('changed'), unchanged: count('unchanged')},
    changedObjects: all.filter((c) => c.action !== 'unchanged'),
    conflicts: results.flatMap((r) => r.conflicts),
    kpackReadiness: {checked: o.wait === 'ready', notChecked},
    warnings,
    durationMs: Date.now() - started,
  }
}

/** Said plainly when kpack's webhooks let objects through unchecked if kpack-webhook does not answer. */
export function webhookPolicyNote(values: Values): string | undefined {
  if (values.kpack.webhook.failurePolicy !== 'Ignore') return undefined
  return 'kpack webhooks use failurePolicy Ignore (values kpack.webhook.failurePolicy): while kpack-webhook does not answer, kpack objects are admitted without its defaults and validation'
}
