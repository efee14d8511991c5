/**
 * The revision record: what kpi installed, kept in the cluster as Helm keeps releases. One Secret
 * per revision in namespace `kpi-system`:
 *
 *   name:   kpi.platform.v<N>                   (one platform per cluster: kpack lives in `kpack`)
 *   type:   kpi.dev/revision
 *   labels: app.kubernetes.io/managed-by=kpi, kpi.dev/record=revision, kpi.dev/name=<bundle name>,
 *           kpi.dev/version=<bundle version>, kpi.dev/revision=<N>, kpi.dev/status=<status>
 *   data:   revision.json.gz: the record below as gzip'd JSON (the API shows it base64, as all Secret data)
 *
 * The labels let `history` list revisions without decoding them; the record holds everything needed
 * to show, diff against or roll back to a revision: the lock, the values and the rendered objects,
 * all WITHOUT credentials (registry.password, registry.dockerConfigJson, proxy userinfo and every
 * Secret's data are removed), plus the status of each stage. An operation writes the record
 * `pending-*` before it touches anything and `deployed` or `failed` at the end, so an interrupted
 * one is visible and can be resumed.
 */
import {createHash} from 'node:crypto'
import {gunzipSync, gzipSync} from 'node:zlib'
import type {Bundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import type {LiveObject} from '../kube/types.js'
import {labelValue} from '../render/meta.js'
import type {KubeObject, Stage} from '../render/types.js'
import {canonical} from '../canonical.js'
import {REVISION_NAMESPACE} from '../namespaces.js'

export const RECORD_API_VERSION = 'kpi.dev/v1alpha1'
export const REVISION_SECRET_TYPE = 'kpi.dev/revision'
export const REVISION_DATA_KEY = 'revision.json.gz'
export const PLATFORM = 'platform'
export const RECORD_LABEL = 'kpi.dev/record'
export const NAME_LABEL = 'kpi.dev/name'
export const VERSION_LABEL = 'kpi.dev/version'
export const REVISION_LABEL = 'kpi.dev/revision'
export const STATUS_LABEL = 'kpi.dev/status'
export const REDACTED = '<redacted>'
export const PARTS_ANNOTATION = 'kpi.dev/parts'
export const PART_RECORD = 'revision-part'
/**
 * A Secret holds at most 1 MiB: a record whose gzip'd JSON is larger is split into parts of this
 * size, the first in the revision's Secret and the rest in `kpi.platform.v<N>.part<i>` (Helm
 * cannot store such a release at all, helm #6711).
 */
export const MAX_PART_BYTES = 900 * 1024

export type Operation = 'install' | 'upgrade' | 'rollback'
export type RevisionStatus = 'pending-install' | 'pending-upgrade' | 'pending-rollback' | 'deployed' | 'failed' | 'superseded'
export type StageStatus = 'pending' | 'applying' | 'waiting' | 'ready' | 'failed'
export type WaitMode = 'ready' | 'applied'

export interface StageRecord {
  name: string
  status: StageStatus
  objects: number
  /** objects created or changed by this revision's apply of the stage */
  changed: number
  startedAt?: string
  finishedAt?: string
  /** why it failed, or what was not checked */
  message?: string
}

export interface RevisionRecord {
  apiVersion: typeof RECORD_API_VERSION
  kind: 'Revision'
  /** the platform name (bundle metadata.name) */
  name: string
  /** the platform version (bundle metadata.version) */
  version: string
  kpackVersion: string
  revision: number
  /** the revision this one replaced (upgrade, rollback); absent for the first install */
  previousRevision?: number
  operation: Operation
  status: RevisionStatus
  /** what it was, for `kpi history`: `upgrade to 1.1.0`, `rollback to 1 (automatic: revision 2 failed)` */
  description?: string
  /** a rollback: the revision whose objects it put back */
  rollbackTo?: number
  /** why it failed */
  message?: string
  kpiVersion: string
  startedAt: string
  updatedAt: string
  finishedAt?: string
  /** `ready`: kpack's Ready conditions were waited for; `applied`: they were not checked */
  wait: WaitMode
  /** sha256 of the canonical JSON of lock, redacted values and redacted objects: same inputs, same digest */
  inputsDigest: string
  lock: Bundle
  /** the values with credentials removed; `redactedFields` lists what was removed */
  values: Record<string, unknown>
  redactedFields: string[]
  objects: Array<{stage: Stage; object: KubeObject}>
  stages: StageRecord[]
}

export const revisionSecretName = (revision: number): string => `kpi.${PLATFORM}.v${revision}`

/** The values without anything secret (the fields the values schema marks secret). */
export {redactValues} from '../values/redact.js'

/** Rendered objects with every Secret's data replaced by a marker (keys kept, values gone). */
export function redactObjects(objects: Array<{stage: Stage; object: KubeObject}>): Array<{stage: Stage; object: KubeObject}> {
  return objects.map(({stage, object}) => {
    if (object.kind !== 'Secret' || object.apiVersion !== 'v1') return {stage, object}
    const o = structuredClone(object) as KubeObject & {data?: Record<string, string>; stringData?: Record<string, string>}
    for (const f of ['data', 'stringData'] as const) {
      if (o[f]) o[f] = Object.fromEntries(Object.keys(o[f]!).map((k) => [k, REDACTED]))
    }
    return {stage, object: o}
  })
}

export function inputsDigest(lock: Bundle, values: Record<string, unknown>, objects: Array<{stage: Stage; object: KubeObject}>): string {
  const text = JSON.stringify(canonical({lock, values, objects}))
  return `sha256:${createHash('sha256').update(text).digest('hex')}`
}

export function encodeRecord(r: RevisionRecord): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(r)), {level: 9})
}

export function decodeRecord(base64: string | string[], where: string): RevisionRecord {
  let r: RevisionRecord
  try {
    const gz = Buffer.concat((Array.isArray(base64) ? base64 : [base64]).map((b) => Buffer.from(b, 'base64')))
    r = JSON.parse(gunzipSync(gz).toString('utf8')) as RevisionRecord
  } catch (e) {
    throw new KpiError('integrity', `${where}: the revision record cannot be read (${(e as Error).message})`, {
      hint: `the Secret was changed by hand; kpi never writes it like this`,
    })
  }
  if (r.apiVersion !== RECORD_API_VERSION || r.kind !== 'Revision') {
    throw new KpiError('input', `${where}: revision record ${r.apiVersion}/${r.kind} is not one this kpi reads`, {hint: 'use the kpi version that wrote it, or a newer one'})
  }
  return r
}

export function revisionLabels(r: Pick<RevisionRecord, 'name' | 'version' | 'revision' | 'status'>): Record<string, string> {
  return {
    'app.kubernetes.io/managed-by': 'kpi',
    [RECORD_LABEL]: 'revision',
    [NAME_LABEL]: labelValue(r.name),
    [VERSION_LABEL]: labelValue(r.version),
    [REVISION_LABEL]: String(r.revision),
    [STATUS_LABEL]: r.status,
  }
}

/**
 * A part's Secret; `id` (the parts-id annotation, from the record's bytes) keeps the parts of two
 * writes of one revision apart, so a write that loses the race for the revision's own Secret
 * never overwrote the parts of the one that won. Records written before it have no id.
 */
export const partSecretName = (revision: number, part: number, id?: string): string => `${revisionSecretName(revision)}.part${part}${id ? `-${id}` : ''}`
export const PARTS_ID_ANNOTATION = 'kpi.dev/parts-id'

/**
 * The Secrets that store a record: the revision's own first (`resourceVersion` makes a replace
 * fail if someone else wrote it since), then the parts beyond the first, if it needs any.
 */
export function revisionSecrets(r: RevisionRecord, resourceVersion?: string, partBytes = MAX_PART_BYTES): LiveObject[] {
  const gz = encodeRecord(r)
  const parts: Buffer[] = []
  for (let i = 0; i < gz.length || i === 0; i += partBytes) parts.push(gz.subarray(i, i + partBytes))
  const id = parts.length > 1 ? createHash('sha256').update(gz).digest('hex').slice(0, 12) : undefined
  const head: LiveObject = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: revisionSecretName(r.revision),
      namespace: REVISION_NAMESPACE,
      labels: revisionLabels(r),
      ...(id ? {annotations: {[PARTS_ANNOTATION]: String(parts.length), [PARTS_ID_ANNOTATION]: id}} : {}),
      ...(resourceVersion ? {resourceVersion} : {}),
    },
    type: REVISION_SECRET_TYPE,
    data: {[REVISION_DATA_KEY]: parts[0]!.toString('base64')},
  }
  const rest = parts.slice(1).map((p, i): LiveObject => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: partSecretName(r.revision, i + 2, id),
      namespace: REVISION_NAMESPACE,
      labels: {'app.kubernetes.io/managed-by': 'kpi', [RECORD_LABEL]: PART_RECORD, [REVISION_LABEL]: String(r.revision)},
    },
    type: REVISION_SECRET_TYPE,
    data: {[REVISION_DATA_KEY]: p.toString('base64')},
  }))
  return [head, ...rest]
}

/** The Secret that stores a record of one part (most records). */
export function revisionSecret(r: RevisionRecord, resourceVersion?: string): LiveObject {
  return revisionSecrets(r, resourceVersion)[0]!
}
