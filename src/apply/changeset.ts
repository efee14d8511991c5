/**
 * The change set, computed apart from applying it (as kapp's diffgraph is apart from its
 * clusterapply): for each object of a stage, whether applying it creates, updates (with the
 * fields) or leaves it; and which objects of the previous revision the new one no longer has
 * (deleted last, by the executor, once every stage is healthy).
 *
 * An update is told by a server-side dry run of the apply compared with the live object, so what
 * the API server would default or keep is not taken for a change, and a controller writing status
 * meanwhile is not either. A kind the cluster does not serve yet (its CRD comes in an earlier
 * stage of the same operation) is a create.
 */
import {isKpiError, type KpiError} from '../errors.js'
import {FIELD_MANAGER, type Kube} from '../kube/client.js'
import type {CheckKind} from '../kube/checks.js'
import {describeRef, groupOf, identity, refOf, type LiveObject, type ObjectRef} from '../kube/types.js'
import {MANAGED_BY, MANAGED_BY_LABEL, type KubeObject, type RenderedObject} from '../render/types.js'
import {diffFields, type FieldChange} from './fielddiff.js'
import {installStageOf, type PlannedObject, type PlannedStage} from './plan.js'
import {withSecretVersions} from './secret-versions.js'
import {mapLimit} from '../pool.js'
import {untouchedSinceApplied, type Applied} from './untouched.js'

export type ChangeAction = 'create' | 'update' | 'unchanged' | 'delete'

export interface Change {
  /** `Deployment kpack/kpack-controller` */
  object: string
  ref: ObjectRef
  action: ChangeAction
  check: CheckKind
  /** 0: namespaces and CRDs, 1: the rest */
  wave: number
  /** what is applied (absent for a delete) */
  desired?: KubeObject
  /** for an update: the fields that change (Secret data masked) */
  fields: FieldChange[]
  /** fields another field manager owns, taken over with force: `kubectl-edit: .spec.replicas` */
  conflict?: string
  /** fields kpi wrote by a PUT (rollback), applied with force and not reported: see onlyOwn() */
  takeOwn?: boolean
  /** written whole (PUT of the live object with the desired spec) instead of applied; see decide() */
  replacement?: LiveObject
}

export interface StageChanges {
  name: string
  title: string
  changes: Change[]
}

/** An object of the previous revision the new one does not have. */
export interface StaleObject {
  /** the install stage it belonged to */
  stage: string
  object: KubeObject
  /** why it is left in place instead of deleted */
  kept?: string
}

const isConflict = (e: unknown): e is KpiError => isKpiError(e) && e.kind === 'conflict'

const conflictsOf = (e: KpiError) => {
  const d = e.details
  return d && 'source' in d && d.source === 'kubernetes' ? d.conflicts ?? [] : []
}

function conflictLine(e: KpiError): string {
  const conflicts = conflictsOf(e)
  return conflicts.length ? conflicts.map((c) => `${c.manager}: ${c.field}`).join(', ') : 'fields of another field manager'
}

/**
 * Fields kpi itself wrote by a PUT (a rollback writes kpack's specs whole: the manager `kpi`,
 * operation Update) conflict with its own apply (`kpi`, Apply). Taking them back is no
 * conflict with anyone: applied with force, not reported.
 */
const onlyOwn = (e: KpiError): boolean => {
  const conflicts = conflictsOf(e)
  return conflicts.length > 0 && conflicts.every((c) => c.manager === FIELD_MANAGER)
}

/**
 * In a namespace this operation created (`fresh`: the API server answered 404 for it, then kpi
 * applied it, moments ago) nothing kpi renders exists yet: the object is a create without asking.
 * On an install that is two thirds of the objects, a GET each (the stage applies it without
 * force, so one that someone made meanwhile meets a conflict and is decided again: stage.ts).
 */
export const inFreshNamespace = (o: PlannedObject, fresh?: ReadonlySet<string>): boolean =>
  !!o.object.metadata.namespace && !!fresh?.has(o.object.metadata.namespace)

/**
 * Decides one object. `force` takes other managers' fields from the start (adopting).
 *
 * `replaceSpec` (rollbacks, for kpack's kinds): the object is written whole, its spec exactly the
 * desired one. A newer kpack's webhook defaults fields into the spec that an older kpack's webhook
 * refuses to decode (kpack 0.17 adds `spec.lifecycle` to builders; 0.16 answers `unknown field
 * "lifecycle"`); they are not kpi's fields, so a server-side apply would keep them.
 */
export async function decide(kube: Kube, o: PlannedObject, force: boolean, replaceSpec = false, applied?: Applied, fresh?: ReadonlySet<string>): Promise<Change> {
  // a Deployment carries the versions of the Secrets it reads, as they are now (secret-versions.ts)
  const desired = o.secrets ? await withSecretVersions(kube, o.object, o.secrets) : o.object
  const base = {object: describeRef(desired), ref: refOf(desired), check: o.check, wave: o.wave, desired, fields: [] as FieldChange[]}
  if (inFreshNamespace(o, fresh) || !(await kube.resourceFor(desired.apiVersion, desired.kind))) return {...base, action: 'create'}
  const live = await kube.get(base.ref)
  if (!live) return {...base, action: 'create'}
  // (not for a spec written whole: a newer kpack's webhook may have defaulted fields into it that an older one refuses)
  if (!force && !replaceSpec && untouchedSinceApplied(desired, applied?.get(identity(desired)), live, o.object)) return {...base, action: 'unchanged'}
  if (replaceSpec) {
    const replacement: LiveObject = {...live, metadata: {...live.metadata, labels: {...live.metadata.labels, ...desired.metadata.labels}}, spec: desired.spec}
    const fields = diffFields(live, replacement)
    return {...base, action: fields.length ? 'update' : 'unchanged', fields, ...(fields.length ? {replacement} : {})}
  }
  let conflict: string | undefined
  let own = false
  let preview: LiveObject
  try {
    preview = await kube.apply(desired, {force, dryRun: true})
  } catch (e) {
    if (force || !isConflict(e)) throw e
    if (onlyOwn(e)) own = true
    else conflict = conflictLine(e)
    preview = await kube.apply(desired, {force: true, dryRun: true})
  }
  const fields = diffFields(live, preview)
  return {...base, action: conflict || own || fields.length ? 'update' : 'unchanged', fields, ...(conflict ? {conflict} : {}), ...(own ? {takeOwn: true} : {})}
}

export async function decideStage(kube: Kube, stage: PlannedStage, force: boolean, concurrency = 8): Promise<StageChanges> {
  const changes = await mapLimit(stage.objects, concurrency, (o) => decide(kube, o, force))
  return {name: stage.name, title: stage.title, changes}
}

/** `group/Kind` of every kind the CRDs among `objects` define. */
const crdKinds = (objects: RenderedObject[]): Set<string> => new Set(objects.flatMap((o) => {
  const spec = o.object.kind === 'CustomResourceDefinition' ? o.object.spec as {group?: string; names?: {kind?: string}} | undefined : undefined
  return spec?.group && spec.names?.kind ? [`${spec.group}/${spec.names.kind}`] : []
}))

/**
 * Objects of `previous` that `desired` lacks. CRDs and Namespaces are never deleted: deleting one
 * deletes every object of its kind or in it, teams' Images and Builds included. Nor is an object
 * of a kind the desired revision's CRDs do not define (going back from kpack 0.17 to 0.16, a
 * ClusterLifecycle): its CRD stays, and the older kpack's webhook, which still intercepts the
 * group, refuses to decode a kind it does not know, even to delete it. They are reported as kept.
 */
export function staleObjects(previous: RenderedObject[], desired: RenderedObject[]): StaleObject[] {
  const want = new Set(desired.map((d) => identity(d.object)))
  const before = crdKinds(previous)
  const after = crdKinds(desired)
  const kindGone = (o: KubeObject) => {
    const k = `${groupOf(o.apiVersion)}/${o.kind}`
    return before.has(k) && !after.has(k)
  }
  return previous
    .filter((p) => !want.has(identity(p.object)))
    .map((p) => ({
      stage: installStageOf(p.stage),
      object: p.object,
      ...(p.object.kind === 'CustomResourceDefinition' ? {kept: 'a CRD is never deleted: that would delete every object of its kind'}
        : p.object.kind === 'Namespace' ? {kept: 'a namespace is never deleted: that would delete everything in it'}
          : kindGone(p.object) ? {kept: `the new revision's CRDs do not define ${p.object.kind}: kept, as its CRD is (the older kpack's webhook would refuse to decode it)`} : {}),
    }))
}

/** The deletion a stale object means now: only when it is there and kpi manages it. */
export async function decideDeletion(kube: Kube, s: StaleObject): Promise<Change | undefined> {
  if (s.kept) return undefined
  if (!(await kube.resourceFor(s.object.apiVersion, s.object.kind))) return undefined
  const live = await kube.get(refOf(s.object))
  if (!live || live.metadata.deletionTimestamp || live.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) return undefined
  return {object: describeRef(s.object), ref: refOf(s.object), action: 'delete', check: 'applied', wave: 1, fields: []}
}

export const countActions = (changes: Change[]): Record<ChangeAction, number> => ({
  create: changes.filter((c) => c.action === 'create').length,
  update: changes.filter((c) => c.action === 'update').length,
  unchanged: changes.filter((c) => c.action === 'unchanged').length,
  delete: changes.filter((c) => c.action === 'delete').length,
})
