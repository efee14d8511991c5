/**
 * kpi install: preflight, then, holding the operation lease, the stages in order with their
 * gates (operation.ts over executor.ts), revision 1 recorded pending-install before the first
 * object and deployed (or failed) at the end. Running it again with the same inputs changes
 * nothing; running it after an install was killed resumes that install's revision.
 */
import type {Bundle} from '../bundle/types.js'
import type {RenderResult} from '../render/types.js'
import type {Values} from '../values/types.js'
import type {RevisionRecord} from '../revision/record.js'
import {latestRevisionAfter, saveRevision} from '../revision/store.js'
import {staleObjects, type ChangeAction} from './changeset.js'
import {contextOf, desiredRevision, runRevision, RevisionFailed, stageRecords, unchangedSincePreflight, withLease, type OperationOptions} from './operation.js'
import {planStages} from './plan.js'
import {preflight, type InstallMode} from './preflight.js'
import {summarize, type OperationSummary} from './summary.js'

export const DEFAULT_STAGE_TIMEOUT_MS = 5 * 60_000

export interface InstallOptions extends OperationOptions {
  lock: Bundle
  values: Values
  /** rendered already (the command may have); rendered here when absent */
  render?: RenderResult
  adopt?: boolean
}

export interface ObjectChange {
  object: string
  action: 'created' | 'changed' | 'unchanged'
}

export interface InstallResult extends OperationSummary {
  name: string
  version: string
  kpackVersion: string
  revision: number
  mode: InstallMode
  serverVersion: string
  warnings: string[]
  durationMs: number
}

export const PREFLIGHT_STAGE = {name: 'preflight', title: 'Preflight: cluster, installation, permissions, images'}

/** The stages install reports progress for, in order (preflight first). */
export function installStageTitles(render: RenderResult): Array<{name: string; title: string}> {
  return [PREFLIGHT_STAGE, ...planStages(render.objects).map((s) => ({name: s.name, title: s.title}))]
}

/** `created`/`changed` as install has always reported them. */
export const pastTense = (a: ChangeAction): ObjectChange['action'] => (a === 'create' ? 'created' : a === 'update' ? 'changed' : 'unchanged')

export async function install(o: InstallOptions): Promise<InstallResult> {
  const started = Date.now()
  const ctx = contextOf(o)
  const now = () => (o.now?.() ?? new Date()).toISOString()
  const {kube, onEvent} = o
  const {render, warnings, stages, redacted, objects, digest} = desiredRevision(o)

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

  return withLease(ctx, 'install', async (_lease, signal) => {
    // what preflight saw must still be so now that this operation holds the lease
    unchangedSincePreflight(pre.existing, await latestRevisionAfter(kube, pre.existing))
    const reconcile = pre.mode === 'reconcile'
    const record: RevisionRecord = {
      apiVersion: 'kpi.dev/v1alpha1',
      kind: 'Revision',
      name: o.lock.metadata.name,
      version: o.lock.metadata.version,
      kpackVersion: o.lock.kpack.version,
      revision: pre.existing?.record.revision ?? 1,
      operation: 'install',
      // a reconcile keeps the deployed revision as it is: same inputs
      status: reconcile ? 'deployed' : 'pending-install',
      description: `install ${o.lock.metadata.version}`,
      kpiVersion: o.kpiVersion,
      startedAt: reconcile ? pre.existing!.record.startedAt : now(),
      updatedAt: now(),
      wait: o.wait,
      inputsDigest: digest,
      lock: o.lock,
      values: redacted.values,
      redactedFields: redacted.redactedFields,
      objects,
      stages: stageRecords(stages),
    }
    // an install resumed with other inputs: what the attempt before applied and these lack goes
    // (its record, written over now, would no longer name it)
    const stale = pre.mode === 'resume' && pre.existing ? staleObjects(pre.existing.record.objects, render.objects) : []
    let outcome
    try {
      // A reconcile writes no record unless something had drifted: same inputs, same revision.
      outcome = await runRevision(ctx, {
        record, over: pre.existing, persist: !reconcile, stages, stale, signal,
        exec: {wait: o.wait, timeoutMs: o.timeoutMs ?? DEFAULT_STAGE_TIMEOUT_MS, force: pre.mode === 'adopt', retry: 'kpi install again (it resumes)'},
      })
    } catch (e) {
      // a reconcile leaves the deployed record alone: `kpi status` reports what is unhealthy now
      throw e instanceof RevisionFailed ? e.error : e
    }
    const s = summarize(outcome.result, o.wait)
    if (reconcile && s.changedObjects.length && pre.existing) {
      // drift a reconcile corrected is recorded: the revision says when and what was re-applied
      await saveRevision(kube, pre.existing, {...record, updatedAt: now()})
    }
    return {
      name: record.name, version: record.version, kpackVersion: record.kpackVersion, revision: record.revision,
      mode: pre.mode, serverVersion: pre.serverVersion, ...s, warnings, durationMs: Date.now() - started,
    }
  })
}

/** Said plainly when kpack's webhooks let objects through unchecked if kpack-webhook does not answer. */
export function webhookPolicyNote(values: Values): string | undefined {
  if (values.kpack.webhook.failurePolicy !== 'Ignore') return undefined
  return 'kpack webhooks use failurePolicy Ignore (values kpack.webhook.failurePolicy): while kpack-webhook does not answer, kpack objects are admitted without its defaults and validation'
}
