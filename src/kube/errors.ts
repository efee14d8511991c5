/** API server answers that are not success, as KpiErrors that name the object: `ClusterBuilder base: ...`. */
import {KpiError, type FieldConflict, type KubernetesErrorDetails} from '../errors.js'
import type {KubeResponse} from './http.js'

interface StatusBody {
  kind?: string
  message?: string
  reason?: string
  details?: {causes?: Array<{reason?: string; field?: string; message?: string}>}
}

export function statusMessage(res: KubeResponse): string {
  const b = res.body as StatusBody | string | undefined
  if (b && typeof b === 'object' && typeof b.message === 'string' && b.message) return b.message
  if (typeof b === 'string' && b.trim()) return b.trim().split('\n')[0]!.slice(0, 300)
  return `HTTP ${res.status}`
}

export const statusReason = (res: KubeResponse): string | undefined => (res.body as StatusBody | undefined)?.reason

/**
 * The fields a server-side apply conflicted on, from the Status causes:
 * `{reason: "FieldManagerConflict", message: "conflict with \"kubectl-edit\" using apps/v1", field: ".spec.replicas"}`.
 */
export function statusConflicts(res: KubeResponse): FieldConflict[] {
  const b = res.body as StatusBody | undefined
  const causes = b && typeof b === 'object' ? b.details?.causes ?? [] : []
  return causes.flatMap((c) => {
    if (c.reason !== 'FieldManagerConflict' || !c.field) return []
    const manager = /conflict with "([^"]*)"/.exec(c.message ?? '')?.[1] ?? ''
    return [{manager, field: c.field}]
  })
}

/**
 * `what` names the object or the request (`ClusterBuilder base`, `list Secrets in kpi-system`).
 * Admission webhook failures get their own hint: with kpack, that is its webhook not answering.
 */
export function apiError(res: KubeResponse, what: string, server: string): KpiError {
  const msg = statusMessage(res)
  const line = `${what}: ${msg}`
  const details: KubernetesErrorDetails = {source: 'kubernetes', status: res.status, reason: statusReason(res)}
  if (res.status === 409) details.conflicts = statusConflicts(res)
  switch (res.status) {
    case 401:
      return new KpiError('auth', `${what}: the Kubernetes API at ${server} did not accept the credentials (401 Unauthorized)`, {
        hint: 'check the user of the kubeconfig context (--kubeconfig, --context)', details,
      })
    case 403:
      return new KpiError('auth', `${what}: forbidden: ${msg.replace(/^.*?is forbidden: /, '')}`, {
        hint: 'ask a cluster admin for the permission, or use a context that has it (--context)', details,
      })
    case 404:
      return new KpiError('not-found', line, {details})
    case 409:
      return new KpiError('conflict', line, {details})
    case 400:
    case 422:
      return new KpiError('input', line, {hint: 'the rendered object was rejected by the API server', details})
    default:
      if (/failed calling webhook/i.test(msg)) {
        return new KpiError('failed', line, {
          hint: 'an admission webhook did not answer; if it is kpack\'s and no kpack-webhook can run on this cluster, set kpack.webhook.failurePolicy: Ignore in the values',
          details,
        })
      }
      return new KpiError('failed', line, {details})
  }
}
