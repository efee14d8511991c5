/**
 * An object the deployed revision applied, untouched since, that the new revision wants exactly
 * as it was: applying it again changes nothing, so its server-side dry run (the most expensive
 * request of a stage: a CRD's is the whole schema, merged and validated) is not needed.
 *
 * All of these must hold, else changeset.decide() asks the API server as usual:
 * - the deployed revision is the latest (no failed or interrupted one may have applied since);
 * - the desired object is, field for field, the one the deployed revision recorded;
 * - the live object carries kpi's apply entry in managedFields, and no other writer of the object
 *   itself (status subresources aside) has an entry as new or newer: nobody took a field since;
 * - every value the desired object sets is the live value (whatever a co-owner may have done).
 * Secrets never qualify: their records hold no data.
 */
import {FIELD_MANAGER} from '../kube/client.js'
import type {LiveObject} from '../kube/types.js'
import type {KubeObject, RenderedObject} from '../render/types.js'
import {identity} from '../kube/types.js'

/** What the deployed revision applied, by identity; only when it is the latest revision. */
export type Applied = Map<string, KubeObject>

export const appliedBy = (deployed: {record: {revision: number; objects: RenderedObject[]}} | undefined, latest: {record: {revision: number}} | undefined): Applied | undefined =>
  deployed && latest?.record.revision === deployed.record.revision ? new Map(deployed.record.objects.map((o) => [identity(o.object), o.object])) : undefined

interface ManagedEntry {
  manager?: string
  operation?: string
  subresource?: string
  time?: string
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]))
  if (isObject(a)) return isObject(b) && Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => sameValue(v, b[k]))
  return a === b
}

/** Every value `want` sets is in `live` (lists element by element, same length); `live` may have more (defaults). */
function within(want: unknown, live: unknown): boolean {
  if (Array.isArray(want)) return Array.isArray(live) && want.length === live.length && want.every((x, i) => within(x, live[i]))
  // an empty map applied is no map stored
  if (isObject(want)) return (live === undefined && !Object.keys(want).length) || (isObject(live) && Object.entries(want).every(([k, v]) => within(v, live[k])))
  return want === live
}

/**
 * `rendered`: the object as the revision records it, when `desired` adds what is only known at apply
 * time (a Deployment's Secret versions, secret-versions.ts): the record is compared with that, the
 * live object with `desired`.
 */
export function untouchedSinceApplied(desired: KubeObject, applied: KubeObject | undefined, live: LiveObject, rendered: KubeObject = desired): boolean {
  if (!applied || desired.kind === 'Secret' || !sameValue(rendered, applied)) return false
  const entries = ((live.metadata as {managedFields?: ManagedEntry[]}).managedFields ?? []).filter((m) => !m.subresource)
  const ours = entries.find((m) => m.manager === FIELD_MANAGER && m.operation === 'Apply')
  if (!ours?.time) return false
  // times have a one-second grain: the same second is not "older"
  if (entries.some((m) => m !== ours && (!m.time || m.time >= ours.time!))) return false
  return within(desired, live)
}
