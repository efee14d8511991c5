/**
 * kpi diff: what `kpi upgrade` with these inputs would change, stage by stage (objects added,
 * changed with their fields, removed), and what kpack would then do to each app Image
 * (kpack-impact.ts). Nothing is written: updates are told by server-side dry runs.
 */
import type {Bundle} from '../bundle/types.js'
import type {Kube} from '../kube/client.js'
import {createRegistryClient, type OciClientOptions, type RegistryClient} from '../oci/index.js'
import {renderPlatform} from '../render/render.js'
import type {RenderResult} from '../render/types.js'
import type {Values} from '../values/types.js'
import {deployedRevision, latestRevision} from '../revision/store.js'
import {decideDeletion, decideStage, staleObjects, type Change} from './changeset.js'
import type {FieldChange} from './fielddiff.js'
import {futureBuilders, kpackImpact, type ImageImpact} from './kpack-impact.js'
import {planStages} from './plan.js'
import {mapLimit} from '../pool.js'
import {valuesCredentials} from './preflight.js'
import {currentObjects} from './upgrade.js'

export interface DiffOptions {
  kube: Kube
  lock: Bundle
  values: Values
  render?: RenderResult
  registryOptions?: OciClientOptions
  registryClient?: RegistryClient
}

export interface StageDiff {
  name: string
  title: string
  added: string[]
  changed: Array<{object: string; fields: FieldChange[]; conflict?: string}>
  removed: string[]
  /** objects of the deployed revision the new one lacks but that kpi leaves in place, with why */
  kept: string[]
  unchanged: number
}

export interface DiffResult {
  from?: {revision: number; version: string; kpackVersion: string}
  to: {version: string; kpackVersion: string}
  stages: StageDiff[]
  kpackImpact: ImageImpact[]
  /** anything added, changed or removed */
  differences: boolean
}

export async function diff(o: DiffOptions): Promise<DiffResult> {
  const {kube} = o
  const render = o.render ?? renderPlatform(o.lock, o.values)
  const stages = planStages(render.objects)
  const deployed = await deployedRevision(kube)
  const latest = await latestRevision(kube)
  const current = deployed ? currentObjects(deployed, latest) : latest?.record.objects ?? []
  const stale = staleObjects(current, render.objects)
  const decided = await mapLimit(stages, 2, (s) => decideStage(kube, s, false))
  const deletions = await mapLimit(stale, 8, async (s) => ({stale: s, change: await decideDeletion(kube, s)}))
  const out: StageDiff[] = decided.map((s) => {
    const of = (a: Change['action']) => s.changes.filter((c) => c.action === a)
    return {
      name: s.name, title: s.title,
      added: of('create').map((c) => c.object),
      changed: of('update').map((c) => ({object: c.object, fields: c.fields, ...(c.conflict ? {conflict: c.conflict} : {})})),
      removed: deletions.filter((x) => x.change && x.stale.stage === s.name).map((x) => x.change!.object),
      kept: deletions.filter((x) => x.stale.kept && x.stale.stage === s.name).map((x) => `${x.stale.object.kind} ${x.stale.object.metadata.name}: ${x.stale.kept}`),
      unchanged: of('unchanged').length,
    }
  })
  const client = o.registryClient ?? createRegistryClient({...o.registryOptions, credentials: valuesCredentials(o.values.registry)})
  let impact: ImageImpact[]
  try {
    impact = await kpackImpact(kube, () => futureBuilders(o.lock, render.objects, client))
  } finally {
    if (!o.registryClient) await client.close()
  }
  const d = deployed?.record
  return {
    ...(d ? {from: {revision: d.revision, version: d.version, kpackVersion: d.kpackVersion}} : {}),
    to: {version: o.lock.metadata.version, kpackVersion: o.lock.kpack.version},
    stages: out,
    kpackImpact: impact,
    differences: out.some((s) => s.added.length || s.changed.length || s.removed.length),
  }
}
