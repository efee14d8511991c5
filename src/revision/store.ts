/**
 * Reading and writing revision records (record.ts) in the cluster. Writes are create (a new
 * revision; 409 if another operation made the same one) and replace with the resourceVersion last
 * read (409 if another operation wrote it since): two kpi processes never silently overwrite
 * each other's record.
 */
import {KpiError, isKpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import type {LiveObject} from '../kube/types.js'
import {
  decodeRecord, RECORD_LABEL, REVISION_DATA_KEY, REVISION_LABEL, REVISION_NAMESPACE, REVISION_SECRET_TYPE,
  revisionSecret, revisionSecretName, STATUS_LABEL, type RevisionRecord, type RevisionStatus,
} from './record.js'

/** A record as read or last written, with the resourceVersion to write it back. */
export interface StoredRevision {
  record: RevisionRecord
  resourceVersion: string
}

/** What the labels tell without decoding: enough for `history` and to find the latest. */
export interface RevisionHead {
  revision: number
  status: RevisionStatus
  secret: string
}

const secretRef = (revision: number) => ({apiVersion: 'v1', kind: 'Secret', name: revisionSecretName(revision), namespace: REVISION_NAMESPACE})

export async function listRevisionHeads(kube: Kube): Promise<RevisionHead[]> {
  const secrets = await kube.list('v1', 'Secret', {namespace: REVISION_NAMESPACE, labelSelector: `${RECORD_LABEL}=revision`})
  return secrets
    .filter((s) => s.type === REVISION_SECRET_TYPE)
    .map((s) => ({revision: Number(s.metadata.labels?.[REVISION_LABEL]), status: s.metadata.labels?.[STATUS_LABEL] as RevisionStatus, secret: s.metadata.name}))
    .filter((h) => Number.isInteger(h.revision) && h.revision > 0)
    .sort((a, b) => a.revision - b.revision)
}

function fromSecret(s: LiveObject): StoredRevision {
  const where = `Secret ${REVISION_NAMESPACE}/${s.metadata.name}`
  const data = (s.data as Record<string, string> | undefined)?.[REVISION_DATA_KEY]
  if (!data) throw new KpiError('integrity', `${where}: no ${REVISION_DATA_KEY} in the revision Secret`, {hint: 'the Secret was changed by hand'})
  return {record: decodeRecord(data, where), resourceVersion: s.metadata.resourceVersion ?? ''}
}

export async function readRevision(kube: Kube, revision: number): Promise<StoredRevision | undefined> {
  const s = await kube.get(secretRef(revision))
  return s ? fromSecret(s) : undefined
}

/** The newest revision, whatever its status; undefined when kpi never installed here. */
export async function latestRevision(kube: Kube): Promise<StoredRevision | undefined> {
  const heads = await listRevisionHeads(kube)
  const last = heads.at(-1)
  return last ? readRevision(kube, last.revision) : undefined
}

export async function ensureRevisionNamespace(kube: Kube): Promise<void> {
  await kube.apply({
    apiVersion: 'v1', kind: 'Namespace',
    metadata: {name: REVISION_NAMESPACE, labels: {'app.kubernetes.io/managed-by': 'kpi'}},
  })
}

export async function createRevision(kube: Kube, record: RevisionRecord): Promise<StoredRevision> {
  try {
    const s = await kube.create(revisionSecret(record))
    return {record, resourceVersion: s.metadata.resourceVersion ?? ''}
  } catch (e) {
    if (isKpiError(e) && e.kind === 'conflict') {
      throw new KpiError('conflict', `revision ${record.revision} already exists: another kpi operation is running or just ran`, {
        hint: 'run kpi status, then try again', cause: e,
      })
    }
    throw e
  }
}

/** Writes `record` over the stored one; fails with 'conflict' if someone else wrote it since it was read. */
export async function saveRevision(kube: Kube, stored: StoredRevision, record: RevisionRecord): Promise<StoredRevision> {
  try {
    const s = await kube.replace(revisionSecret(record, stored.resourceVersion))
    return {record, resourceVersion: s.metadata.resourceVersion ?? ''}
  } catch (e) {
    if (isKpiError(e) && e.kind === 'conflict') {
      throw new KpiError('conflict', `revision ${record.revision} was changed by another kpi operation while this one ran`, {
        hint: 'run kpi status to see where the platform stands', cause: e,
      })
    }
    throw e
  }
}
