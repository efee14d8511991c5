/** kpi history: every revision kept in the cluster, oldest first, from the records themselves. */
import {KpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import type {RevisionRecord} from '../revision/record.js'
import {listRevisionHeads, readRevision} from '../revision/store.js'

export interface HistoryEntry {
  revision: number
  /** when it last changed (finished, or where it stopped) */
  updated: string
  name: string
  version: string
  kpackVersion: string
  status: RevisionRecord['status']
  operation: RevisionRecord['operation']
  description: string
  /** why it failed */
  message?: string
}

export async function history(kube: Kube): Promise<HistoryEntry[]> {
  const heads = await listRevisionHeads(kube)
  if (!heads.length) {
    throw new KpiError('not-found', `no kpi installation in the cluster at ${kube.server} (no revision record in namespace kpi-system)`, {hint: 'install with kpi install -b LOCK -f VALUES'})
  }
  const out: HistoryEntry[] = []
  for (const h of heads) {
    const s = await readRevision(kube, h.revision)
    if (!s) continue
    const r = s.record
    out.push({
      revision: r.revision, updated: r.finishedAt ?? r.updatedAt, name: r.name, version: r.version, kpackVersion: r.kpackVersion,
      status: r.status, operation: r.operation, description: r.description ?? `${r.operation} ${r.version}`, ...(r.message ? {message: r.message} : {}),
    })
  }
  return out
}
