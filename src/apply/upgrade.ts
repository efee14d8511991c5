/**
 * kpi upgrade: install's preflight plus the version policy and the CRD check
 * (upgrade-checks.ts); then, holding the lease, the new revision stage by stage with its gates,
 * and what the deployed revision had and this one lacks deleted last. When a gate fails, the
 * deployed revision is put back by itself (rollback.ts), unless --no-rollback; both the failed
 * revision and the rollback are recorded, and the error names the failing object, its condition
 * and recent events, then says whether the rollback came back healthy.
 *
 * An upgrade whose kpi process died (its lease expired, or its process is gone) is recorded as
 * interrupted by the next upgrade or rollback, which then runs as usual: no manual cleanup.
 */
import type {Bundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import type {KubeObject, RenderedObject, RenderResult} from '../render/types.js'
import type {Values} from '../values/types.js'
import type {RevisionRecord} from '../revision/record.js'
import {readInstallation, type StoredRevision} from '../revision/store.js'
import {identity} from '../kube/types.js'
import {staleObjects} from './changeset.js'
import {DEFAULT_STAGE_TIMEOUT_MS, PREFLIGHT_STAGE} from './install.js'
import {contextOf, desiredRevision, nowIso, runRevision, RevisionFailed, stageRecords, underLease, withLease, type OperationOptions} from './operation.js'
import {checkAccessAndImages, checkCluster, preflightTask, runningImages, startImageCheck, type Task} from './preflight.js'
import {runRollback} from './rollback.js'
import {gateFailureOf} from './stage.js'
import {appliedBy} from './untouched.js'
import {summarize, type OperationSummary} from './summary.js'
import {crdStoredVersions, versionPolicy} from './upgrade-checks.js'

export interface UpgradeOptions extends OperationOptions {
  lock: Bundle
  values: Values
  render?: RenderResult
  allowDowngrade?: boolean
  /** put the deployed revision back when a gate fails (default true; --no-rollback) */
  rollback?: boolean
}

export interface UpgradeResult extends OperationSummary {
  name: string
  version: string
  kpackVersion: string
  revision: number
  from: {revision: number; version: string; kpackVersion: string}
  /** the deployed revision already had these inputs: nothing recorded, drift corrected */
  upToDate: boolean
  /** a revision whose operation had died, recorded as interrupted by this one */
  interrupted?: number
  serverVersion: string
  warnings: string[]
  durationMs: number
}

/**
 * Objects that may be in the cluster: the deployed revision's, and those of every revision after
 * it, which failed or died part way (a failed upgrade whose automatic rollback failed too leaves
 * two, and the rollback's record lists only its target's objects).
 */
export function currentObjects(deployed: StoredRevision | undefined, later: readonly StoredRevision[]): RenderedObject[] {
  const out = [...(deployed?.record.objects ?? [])]
  const seen = new Set(out.map((o) => identity(o.object)))
  for (const r of later) {
    for (const o of r.record.objects) {
      const id = identity(o.object)
      if (seen.has(id)) continue
      seen.add(id)
      out.push(o)
    }
  }
  return out
}

/** The deployed revision (there must be one), every revision after it and the latest, whatever their state. */
async function installation(o: UpgradeOptions, task: Task): Promise<{deployed: StoredRevision; later: StoredRevision[]; latest?: StoredRevision}> {
  const kube = o.kube
  task('existing installation', 'start')
  const {deployed, later, latest} = await readInstallation(kube)
  if (!deployed) {
    task('existing installation', 'failed')
    if (!latest) throw new KpiError('not-found', `no kpi installation in the cluster at ${kube.server} (no revision record in namespace kpi-system)`, {hint: 'install with kpi install -b LOCK -f VALUES'})
    throw new KpiError('conflict', `revision ${latest.record.revision} (${latest.record.operation}) is ${latest.record.status} and no revision is deployed: there is nothing to upgrade from`, {
      hint: latest.record.operation === 'install' ? 'finish the install with kpi install -b LOCK -f VALUES (it resumes)' : 'see kpi status and kpi history',
    })
  }
  const d = deployed.record
  task('existing installation', 'done', `revision ${d.revision}: ${d.name} ${d.version} (kpack ${d.kpackVersion})${latest && latest.record.revision !== d.revision ? `; revision ${latest.record.revision} is ${latest.record.status}` : ''}`)
  return {deployed, later, latest}
}

/** Upgrade's other preflight checks: version policy, CRDs, what gets deleted. */
async function clusterChecks(o: UpgradeOptions, render: RenderResult, deployed: StoredRevision, later: StoredRevision[], task: Task) {
  const kube = o.kube
  const d = deployed.record
  versionPolicy(d.version, o.lock.metadata.version, o.allowDowngrade ?? false, task)
  await crdStoredVersions(kube, render.objects, task)
  const current = currentObjects(deployed, later)
  const stale = staleObjects(current, render.objects)
  const deletes: KubeObject[] = []
  for (const s of stale) if (!s.kept && (await kube.resourceFor(s.object.apiVersion, s.object.kind))) deletes.push(s.object)
  return {current, stale, deletes}
}

export async function upgrade(o: UpgradeOptions): Promise<UpgradeResult> {
  const started = Date.now()
  const {kube, onEvent} = o
  const ctx = contextOf(o)
  const {render, warnings, stages, redacted, objects, digest} = desiredRevision(o)
  const timeoutMs = o.timeoutMs ?? DEFAULT_STAGE_TIMEOUT_MS

  onEvent({type: 'stage-start', stage: PREFLIGHT_STAGE.name, message: 'Preflight: cluster, installation, version policy, CRDs, permissions, images'})
  const task = preflightTask(onEvent)
  const serverVersion = await checkCluster(kube, task)
  const {deployed, later, latest} = await installation(o, task)
  const registryCheck = {objects: render.objects, registry: o.values.registry, clientOptions: o.registryOptions ?? {}, client: o.registryClient, running: runningImages(deployed, later)}
  // the images are the longest part of preflight: asked while the rest is checked
  const imageCheck = startImageCheck(registryCheck, task)
  const pre = await clusterChecks(o, render, deployed, later, task).catch((e) => {
    imageCheck.cancel()
    throw e
  })
  const {current, stale} = pre
  const images = await checkAccessAndImages({kube, ...registryCheck, deletes: pre.deletes, images: imageCheck.images, onEvent}, task)
  onEvent({type: 'stage-done', stage: PREFLIGHT_STAGE.name, message: `Kubernetes ${serverVersion}, ${images} images present`})
  const d = deployed.record


  return withLease(ctx, 'upgrade', async (_lease, signal) => {
    const {now, next, interrupted} = await underLease(ctx, latest, 'kpi upgrade')
    const result = (r: Omit<UpgradeResult, 'name' | 'version' | 'kpackVersion' | 'from' | 'serverVersion' | 'warnings' | 'durationMs'>): UpgradeResult => ({
      name: o.lock.metadata.name, version: o.lock.metadata.version, kpackVersion: o.lock.kpack.version,
      from: {revision: d.revision, version: d.version, kpackVersion: d.kpackVersion}, serverVersion, warnings, durationMs: Date.now() - started, ...r,
    })
    const exec = {wait: o.wait, timeoutMs, retry: 'kpi upgrade again', applied: appliedBy(deployed, now)}
    if (d.inputsDigest === digest && !interrupted && now?.record.revision === d.revision) {
      onEvent({type: 'info', message: `revision ${d.revision} is deployed with these inputs: checking that nothing drifted`})
      const same = await runRevision(ctx, {record: {...d}, persist: false, stages, stale: [], signal, exec}).catch((e) => {
        throw e instanceof RevisionFailed ? e.error : e
      })
      return result({revision: d.revision, upToDate: true, ...summarize(same.result, o.wait)})
    }
    const record: RevisionRecord = {
      apiVersion: 'kpi.dev/v1alpha1', kind: 'Revision',
      name: o.lock.metadata.name, version: o.lock.metadata.version, kpackVersion: o.lock.kpack.version,
      revision: next, previousRevision: d.revision, operation: 'upgrade', status: 'pending-upgrade',
      description: `upgrade ${d.version} -> ${o.lock.metadata.version}`,
      kpiVersion: o.kpiVersion, startedAt: nowIso(ctx), updatedAt: nowIso(ctx), wait: o.wait, inputsDigest: digest,
      lock: o.lock, values: redacted.values, redactedFields: redacted.redactedFields, objects, stages: stageRecords(stages),
    }
    try {
      const done = await runRevision(ctx, {record, persist: true, stages, stale, signal, exec})
      return result({revision: next, upToDate: false, interrupted, ...summarize(done.result, o.wait)})
    } catch (e) {
      if (!(e instanceof RevisionFailed)) throw e
      const why = e.error
      const at = e.stage ? `at stage ${e.stage}` : ''
      if (signal.aborted) {
        // another kpi took the lease over: it owns the platform now, and a rollback from here would race it
        throw new KpiError('conflict', `upgrade to ${o.lock.metadata.version} stopped ${at} (revision ${next}): ${why.message}; not rolled back: the operation that holds the lease now decides`, {
          hint: 'kpi status shows the operation running now and where the platform stands', details: why.details,
        })
      }
      if (o.rollback === false) {
        throw new KpiError(why.kind, `upgrade to ${o.lock.metadata.version} failed ${at} (revision ${next}, left as it is: --no-rollback): ${why.message}`, {
          hint: `inspect with kpi status; then kpi rollback ${d.revision}, or fix the cause and kpi upgrade again`, details: why.details,
        })
      }
      onEvent({type: 'warning', message: `upgrade failed ${at}: rolling back to revision ${d.revision} (${d.version})`})
      const gate = gateFailureOf(why)
      try {
        await runRollback(ctx, {
          target: deployed, revision: next + 1, previousRevision: d.revision, current: [...current, ...render.objects.filter((x) => !current.some((c) => identity(c.object) === identity(x.object)))],
          description: `rollback to ${d.revision} (automatic: revision ${next} failed ${at})`, wait: o.wait, timeoutMs, signal,
        })
      } catch (r) {
        const rb = r instanceof RevisionFailed ? r.error : (r as Error)
        throw new KpiError('failed', `upgrade to ${o.lock.metadata.version} failed ${at} (revision ${next}): ${why.message}; the automatic rollback to revision ${d.revision} FAILED too (revision ${next + 1}): ${rb.message}. The platform is now neither revision ${d.revision} nor ${next}`, {
          hint: `kpi status names what is unhealthy; fix it, then kpi rollback ${d.revision}`, details: why.details,
        })
      }
      throw new KpiError('rolled-back', `upgrade to ${o.lock.metadata.version} failed ${at} (revision ${next}): ${why.message}; rolled back by itself to revision ${d.revision} (${d.version}, recorded as revision ${next + 1}), which is healthy`, {
        hint: gate ? 'fix the cause named above, then kpi upgrade again; kpi history shows both revisions' : 'kpi history shows both revisions', details: why.details,
      })
    }
  })
}
