/**
 * Small builders for rendered objects: every object carries the kpi labels and its stage, so the
 * installer (and `kubectl get -l app.kubernetes.io/managed-by=kpi`) can find what kpi owns.
 */
import {MANAGED_BY, MANAGED_BY_LABEL, STAGE_LABEL, type KubeObject, type RenderedObject, type Stage} from './types.js'

export interface MetaInput {
  name: string
  namespace?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

/** An object in a stage: `body` holds everything but apiVersion, kind and metadata. */
export function obj(stage: Stage, apiVersion: string, kind: string, meta: MetaInput, body: Record<string, unknown> = {}): RenderedObject {
  const object: KubeObject = {
    apiVersion,
    kind,
    metadata: {
      name: meta.name,
      ...(meta.namespace === undefined ? {} : {namespace: meta.namespace}),
      labels: {...(meta.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY, [STAGE_LABEL]: stage},
      // no empty `annotations: {}`: on a custom resource it makes every apply a new write
      ...(meta.annotations && Object.keys(meta.annotations).length ? {annotations: {...meta.annotations}} : {}),
    },
    ...body,
  }
  return {stage, object}
}

/** A label value: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric. */
export function labelValue(s: string): string {
  const v = s.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63)
  return v.replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '')
}
