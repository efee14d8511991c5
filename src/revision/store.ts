/**
 * Reading and writing revision records (record.ts) in the cluster. Writes are create (a new
 * revision; 409 if another operation made the same one) and replace with the resourceVersion last
 * read (409 if another operation wrote it since): two kpi processes never silently overwrite
 * each other's record. A record split in parts (record.ts) has its parts written before the
 * revision's own Secret, which names how many to read.
 */
import {KpiError, isKpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import type {LiveObject} from '../kube/types.js'
import {REVISION_NAMESPACE} from '../namespaces.js'
import {
  decodeRecord, PART_RECORD, PARTS_ANNOTATION, PARTS_ID_ANNOTATION, partSecretName, RECORD_LABEL, REVISION_DATA_KEY, REVISION_LABEL,
  REVISION_SECRET_TYPE, revisionSecretName, revisionSecrets, STATUS_LABEL, type RevisionRecord, type RevisionStatus,
} from './record.js'

/** A record as read or last written, with the resourceVersion to write it back. */
export interface StoredRevision {
  record: RevisionRecord
  resourceVersion: string
  /** how many Secrets hold it */
  parts: number
  /** the parts' id (record.ts partSecretName), when it has parts beyond the first */
  partsId?: string
}

/** What the labels tell without decoding: enough to find the latest and to prune. */
export interface RevisionHead {
  revision: number
  status: RevisionStatus
  secret: string
}

export const DEFAULT_HISTORY_MAX = 10

const secretRef = (name: string) => ({apiVersion: 'v1', kind: 'Secret', name, namespace: REVISION_NAMESPACE})

export async function listRevisionHeads(kube: Kube): Promise<RevisionHead[]> {
  const secrets = await kube.list('v1', 'Secret', {namespace: REVISION_NAMESPACE, labelSelector: `${RECORD_LABEL}=revision`})
  return secrets
    .filter((s) => s.type === REVISION_SECRET_TYPE)
    .map((s) => ({revision: Number(s.metadata.labels?.[REVISION_LABEL]), status: s.metadata.labels?.[STATUS_LABEL] as RevisionStatus, secret: s.metadata.name}))
    .filter((h) => Number.isInteger(h.revision) && h.revision > 0)
    .sort((a, b) => a.revision - b.revision)
}

const dataOf = (s: LiveObject) => (s.data as Record<string, string> | undefined)?.[REVISION_DATA_KEY]

async function fromSecret(kube: Kube, s: LiveObject): Promise<StoredRevision> {
  const where = `Secret ${REVISION_NAMESPACE}/${s.metadata.name}`
  const first = dataOf(s)
  if (!first) throw new KpiError('integrity', `${where}: no ${REVISION_DATA_KEY} in the revision Secret`, {hint: 'the Secret was changed by hand'})
  const parts = Number(s.metadata.annotations?.[PARTS_ANNOTATION] ?? 1)
  const partsId = partsIdOf(s)
  const chunks = [first]
  const revision = Number(s.metadata.labels?.[REVISION_LABEL])
  for (let i = 2; i <= parts; i++) {
    const name = partSecretName(revision, i, partsId)
    const p = await kube.get(secretRef(name))
    const d = p && dataOf(p)
    if (!d) throw new KpiError('integrity', `${where}: part ${i} of ${parts} (Secret ${name}) is missing`, {hint: 'the record was deleted in part by hand'})
    chunks.push(d)
  }
  return storedAs(decodeRecord(chunks, where), s, parts)
}

/** A record as its revision's Secret `head` (as read, or as just written) stores it in `parts` Secrets. */
function storedAs(record: RevisionRecord, head: LiveObject, parts: number): StoredRevision {
  const partsId = partsIdOf(head)
  return {record, resourceVersion: head.metadata.resourceVersion ?? '', parts, ...(partsId ? {partsId} : {})}
}

export async function readRevision(kube: Kube, revision: number): Promise<StoredRevision | undefined> {
  const s = await kube.get(secretRef(revisionSecretName(revision)))
  return s ? fromSecret(kube, s) : undefined
}

/** The newest revision, whatever its status; undefined when kpi never installed here. */
export async function latestRevision(kube: Kube, listed?: RevisionHead[]): Promise<StoredRevision | undefined> {
  const heads = listed ?? await listRevisionHeads(kube)
  const last = heads.at(-1)
  return last ? readRevision(kube, last.revision) : undefined
}

/**
 * The newest revision again, once the operation holds the lease, knowing it was `seen` (or none)
 * at preflight: revisions are numbered one after another, so a newer one than `seen` would be
 * `seen + 1`. Two GETs by name rather than a LIST: a LIST right after the lease's write waits
 * for the API server's watch cache to catch up with that write (35-43 ms measured on the
 * benchmark sandbox, against 2-5 ms for a GET). Only when `seen + 1` exists is the whole list read.
 */
export async function latestRevisionAfter(kube: Kube, seen: StoredRevision | undefined): Promise<StoredRevision | undefined> {
  const n = seen?.record.revision ?? 0
  const [newer, again] = await Promise.all([kube.get(secretRef(revisionSecretName(n + 1))), n ? readRevision(kube, n) : undefined])
  return newer ? latestRevision(kube) : again
}

/** The newest revision that is deployed (the platform as it runs), if any. */
const deployedHead = (heads: readonly RevisionHead[]): number | undefined => heads.filter((h) => h.status === 'deployed').at(-1)?.revision

/**
 * The deployed revision, and every revision after it whatever its status (failed, interrupted,
 * pending): what the cluster may hold is what any of them applied. Without a deployed revision,
 * every revision is after it. `latest` is the newest of all.
 */
export interface Installation {
  deployed?: StoredRevision
  later: StoredRevision[]
  latest?: StoredRevision
}

export async function readInstallation(kube: Kube, listed?: RevisionHead[]): Promise<Installation> {
  const heads = listed ?? await listRevisionHeads(kube)
  const at = deployedHead(heads) ?? 0
  const read = await Promise.all(heads.filter((h) => h.revision >= at).map((h) => readRevision(kube, h.revision)))
  const found = read.filter((r): r is StoredRevision => r !== undefined)
  const deployed = found.find((r) => r.record.revision === at)
  return {deployed, later: found.filter((r) => r.record.revision > at), latest: found.at(-1)}
}

export async function ensureRevisionNamespace(kube: Kube): Promise<void> {
  await kube.apply({
    apiVersion: 'v1', kind: 'Namespace',
    metadata: {name: REVISION_NAMESPACE, labels: {'app.kubernetes.io/managed-by': 'kpi'}},
  })
}

/**
 * Parts beyond the first go in before the revision's own Secret, under names of their own write
 * (partSecretName's id); the parts of the write they replace go after it.
 */
async function writeParts(kube: Kube, parts: LiveObject[]): Promise<void> {
  for (const p of parts) await kube.apply(p, {force: true})
}

const partsIdOf = (head: LiveObject): string | undefined => head.metadata.annotations?.[PARTS_ID_ANNOTATION]

async function dropParts(kube: Kube, revision: number, count: number, id: string | undefined): Promise<void> {
  for (let i = 2; i <= count; i++) await kube.delete(secretRef(partSecretName(revision, i, id)))
}

/** After a write of the revision's own Secret was refused: this write's parts, unless the Secret there uses the very same. */
async function dropLosingParts(kube: Kube, head: LiveObject, count: number): Promise<void> {
  const id = partsIdOf(head)
  if (!id) return
  const there = await kube.get(secretRef(head.metadata.name)).catch(() => undefined)
  if (there && partsIdOf(there) === id) return
  await dropParts(kube, Number(head.metadata.labels?.[REVISION_LABEL]), count, id).catch(() => {})
}

export async function createRevision(kube: Kube, record: RevisionRecord): Promise<StoredRevision> {
  const [head, ...parts] = revisionSecrets(record)
  try {
    await writeParts(kube, parts)
    const s = await kube.create(head!)
    return storedAs(record, s, parts.length + 1)
  } catch (e) {
    if (isKpiError(e) && e.kind === 'conflict') {
      await dropLosingParts(kube, head!, parts.length + 1)
      throw new KpiError('conflict', `revision ${record.revision} already exists: another kpi operation is running or just ran`, {
        hint: 'run kpi status, then try again', cause: e,
      })
    }
    throw e
  }
}

/** Writes `record` over the stored one; fails with 'conflict' if someone else wrote it since it was read. */
export async function saveRevision(kube: Kube, stored: StoredRevision, record: RevisionRecord): Promise<StoredRevision> {
  const [head, ...parts] = revisionSecrets(record, stored.resourceVersion)
  const id = partsIdOf(head!)
  try {
    await writeParts(kube, parts)
    const s = await kube.replace(head!)
    // the parts of the write this one replaced (the same id: the same bytes, kept)
    if (stored.parts > 1 && stored.partsId !== id) await dropParts(kube, record.revision, stored.parts, stored.partsId)
    return storedAs(record, s, parts.length + 1)
  } catch (e) {
    if (isKpiError(e) && e.kind === 'conflict') {
      await dropLosingParts(kube, head!, parts.length + 1)
      throw new KpiError('conflict', `revision ${record.revision} was changed by another kpi operation while this one ran`, {
        hint: 'run kpi status to see where the platform stands', cause: e,
      })
    }
    throw e
  }
}

export async function deleteRevision(kube: Kube, revision: number): Promise<void> {
  const parts = await kube.list('v1', 'Secret', {namespace: REVISION_NAMESPACE, labelSelector: `${RECORD_LABEL}=${PART_RECORD},${REVISION_LABEL}=${revision}`})
  await kube.delete(secretRef(revisionSecretName(revision)))
  for (const p of parts) await kube.delete(secretRef(p.metadata.name))
}

/**
 * Keeps the newest `max` revisions, and the deployed one whatever its age (the one a rollback
 * goes back to); deletes the rest, oldest first. Returns the revisions deleted.
 */
export async function pruneHistory(kube: Kube, max = DEFAULT_HISTORY_MAX): Promise<number[]> {
  const heads = await listRevisionHeads(kube)
  const deployed = deployedHead(heads)
  const drop = heads.slice(0, Math.max(0, heads.length - max)).filter((h) => h.revision !== deployed)
  for (const h of drop) await deleteRevision(kube, h.revision)
  return drop.map((h) => h.revision)
}
