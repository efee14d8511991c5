/**
 * The `kpi rollback [REVISION]` action: preflight (cluster, the target revision, permissions, the
 * images it brings back still in the registry, asked with the credentials the cluster holds now,
 * since records hold none; a record cannot prove that the registry still has them), then, holding the lease, the rollback (rollback.ts). An operation that died is
 * recorded as interrupted first, as upgrade does.
 */
import {KpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import {refOf} from '../kube/types.js'
import {KPACK_NAMESPACE} from '../namespaces.js'
import {REGISTRY_SECRET} from '../render/platform.js'
import type {RegistryValues} from '../values/types.js'
import {readInstallation} from '../revision/store.js'
import {DEFAULT_STAGE_TIMEOUT_MS, PREFLIGHT_STAGE} from './install.js'
import {contextOf, RevisionFailed, underLease, withLease, type OperationOptions} from './operation.js'
import {checkAccessAndImages, checkCluster, preflightTask, runningImages} from './preflight.js'
import {rollbackTarget, runRollback} from './rollback.js'
import {summarize, type OperationSummary} from './summary.js'
import {currentObjects} from './upgrade.js'
import {staleObjects} from './changeset.js'
import {appliedBy} from './untouched.js'

export interface RollbackOptions extends OperationOptions {
  /** default: the revision deployed before the deployed one */
  revision?: number
}

export interface RollbackResult extends OperationSummary {
  name: string
  version: string
  kpackVersion: string
  /** the new revision */
  revision: number
  rollbackTo: number
  interrupted?: number
  serverVersion: string
  durationMs: number
}

/** The registry credentials the cluster holds now (the platform's dockerconfigjson Secret), for the image check. */
type RecordedObject = {object: {kind: string; type?: unknown; metadata: {name: string; namespace?: string}}}

/**
 * The platform's registry Secret among a revision's objects, by name: a team's Secret may hold an
 * account of its own (teams[].registry), which need not read the platform's images, and with an
 * anonymous platform it is the only dockerconfigjson Secret there is.
 */
export const platformRegistrySecret = (objects: RecordedObject[]): RecordedObject['object'] | undefined =>
  objects.map((o) => o.object).find((o) => o.kind === 'Secret' && o.metadata.name === REGISTRY_SECRET && o.metadata.namespace === KPACK_NAMESPACE)

async function liveRegistry(kube: Kube, registry: Record<string, unknown>, objects: RecordedObject[]): Promise<RegistryValues> {
  const r = registry as unknown as RegistryValues
  const secret = platformRegistrySecret(objects)
  const live = secret ? await kube.get(refOf(secret as never)) : undefined
  const json = (live?.data as Record<string, string> | undefined)?.['.dockerconfigjson']
  return {server: r.server, repository: r.repository, ...(json ? {dockerConfigJson: Buffer.from(json, 'base64').toString('utf8')} : {})}
}

export async function rollback(o: RollbackOptions): Promise<RollbackResult> {
  const started = Date.now()
  const {kube, onEvent} = o
  const ctx = contextOf(o)
  onEvent({type: 'stage-start', stage: PREFLIGHT_STAGE.name, message: 'Preflight: cluster, target revision, permissions, images'})
  const task = preflightTask(onEvent)
  const serverVersion = await checkCluster(kube, task)
  task('target revision', 'start')
  const target = await rollbackTarget(kube, o.revision)
  const t = target.record
  task('target revision', 'done', `revision ${t.revision}: ${t.name} ${t.version} (kpack ${t.kpackVersion}, ${t.status})`)
  const [{deployed, later, latest}, registry] = await Promise.all([readInstallation(kube), liveRegistry(kube, t.values.registry as Record<string, unknown>, t.objects)])
  const current = currentObjects(deployed, later)
  const deletes = staleObjects(current, t.objects).filter((s) => !s.kept).map((s) => s.object)
  // the CAs the cluster trusts are in the record (values caCerts, not secret), beside --ca-cert
  const caCerts = [...(o.registryOptions?.caCerts ?? []), ...((t.values.caCerts as string[] | undefined) ?? [])]
  // the images the rollback brings back are asked for; those the deployed revision runs are not (preflight.ts RunningImages)
  const images = await checkAccessAndImages({kube, objects: t.objects, registry, clientOptions: {...o.registryOptions, caCerts}, client: o.registryClient, deletes, running: runningImages(deployed, later), onEvent}, task)
  onEvent({type: 'stage-done', stage: PREFLIGHT_STAGE.name, message: `Kubernetes ${serverVersion}, ${images} images present`})

  return withLease(ctx, 'rollback', async (_lease, signal) => {
    const {now, next, interrupted} = await underLease(ctx, latest, `kpi rollback to ${t.revision}`)
    try {
      const done = await runRollback(ctx, {
        target, revision: next, previousRevision: deployed?.record.revision, current,
        description: `rollback to ${t.revision}`, wait: o.wait, timeoutMs: o.timeoutMs ?? DEFAULT_STAGE_TIMEOUT_MS, signal, applied: appliedBy(deployed, now),
      })
      return {
        name: t.name, version: t.version, kpackVersion: t.kpackVersion, revision: next, rollbackTo: t.revision, interrupted,
        serverVersion, durationMs: Date.now() - started, ...summarize(done.result, o.wait),
      }
    } catch (e) {
      if (!(e instanceof RevisionFailed)) throw e
      throw new KpiError(e.error.kind, `rollback to revision ${t.revision} failed${e.stage ? ` at stage ${e.stage}` : ''} (revision ${next}): ${e.error.message}`, {
        hint: `kpi status names what is unhealthy; fix it, then kpi rollback ${t.revision} again`, details: e.error.details,
      })
    }
  })
}
