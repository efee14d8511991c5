/**
 * kpi diff: what `kpi upgrade` with these inputs would change, stage by stage (objects added,
 * changed with their fields, removed), and what kpack would then do to each app Image
 * (kpack-impact.ts). Nothing is written: updates are told by server-side dry runs.
 */
import type {Bundle} from '../bundle/types.js'
import type {Kube} from '../kube/client.js'
import {describeRef} from '../kube/types.js'
import {createRegistryClient, type OciClientOptions, type RegistryClient} from '../oci/index.js'
import {renderPlatform} from '../render/render.js'
import type {RenderResult} from '../render/types.js'
import type {Values} from '../values/types.js'
import {readInstallation} from '../revision/store.js'
import {decideDeletion, decideStage, staleObjects, type Change} from './changeset.js'
import type {FieldChange} from './fielddiff.js'
import {futureBuilders, kpackImpact, type ImageImpact} from './kpack-impact.js'
import {planStages, type PlannedStage} from './plan.js'
import {SECRET_VERSIONS_ANNOTATION} from './secret-versions.js'
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
  const {deployed, later} = await readInstallation(kube)
  const current = currentObjects(deployed, later)
  const stale = staleObjects(current, render.objects)
  const decided = await mapLimit(stages, 2, (s) => decideStage(kube, s, false))
  const deletions = await mapLimit(stale, 8, async (s) => ({stale: s, change: await decideDeletion(kube, s)}))
  const rolled = rolledBySecrets(stages, decided.flatMap((s) => s.changes))
  const out: StageDiff[] = decided.map((s) => {
    const changes = s.changes.map((c) => withRollout(c, rolled.get(c.object)))
    const of = (a: Change['action']) => changes.filter((c) => c.action === a)
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

/** A change with the rollout a changed Secret causes (an unchanged object becomes an update). */
function withRollout(c: Change, rollout: FieldChange[] | undefined): Change {
  if (!rollout || c.action === 'create') return c
  const fields = [...c.fields, ...rollout.filter((r) => !c.fields.some((f) => f.path === r.path))]
  return {...c, action: 'update', fields}
}

/**
 * The Deployments an upgrade rolls because a Secret they read changes (secret-versions.ts): their
 * rendered objects are the same, and the new resourceVersion is only known once the Secret is
 * applied, so the dry run calls them unchanged. Told as the annotation that will change.
 */
function rolledBySecrets(stages: PlannedStage[], changes: Change[]): Map<string, FieldChange[]> {
  const changed = new Set(changes.filter((c) => c.ref.kind === 'Secret' && (c.action === 'create' || c.action === 'update'))
    .map((c) => `${c.ref.namespace}/${c.ref.name}`))
  const readers = new Map(stages.flatMap((s) => s.objects).filter((o) => o.secrets).map((o) => [describeRef(o.object), o.secrets!]))
  const out = new Map<string, FieldChange[]>()
  for (const c of changes) {
    const secrets = (readers.get(c.object) ?? []).filter((name) => changed.has(`${c.ref.namespace}/${name}`))
    if (!secrets.length) continue
    const now = (c.desired?.spec as {template?: {metadata?: {annotations?: Record<string, string>}}} | undefined)?.template?.metadata?.annotations?.[SECRET_VERSIONS_ANNOTATION]
    out.set(c.object, [{
      path: `spec.template.metadata.annotations.${SECRET_VERSIONS_ANNOTATION}`,
      ...(now ? {before: now} : {}),
      // not a value: the version exists once the Secret is written; said in words for people and --json alike
      after: `new versions of ${secrets.map((n) => `Secret ${n}`).join(', ')} (the pods restart)`,
    }])
  }
  return out
}
