/**
 * A Deployment's pods read the ConfigMaps they mount or take env from once, at start: kpack's
 * controller its helper images (env from ConfigMaps), cert-injection-webhook the CA and proxy it
 * writes into build pods (files read at start-up), the controller kpi's CA bundle. An upgrade that
 * changes only such a ConfigMap (a new CA, a patched helper image) would leave the old values
 * running. A checksum of those ConfigMaps in the pod template makes the change a rollout, as
 * Helm charts do it and as kpack's own release does with kapp's versioned ConfigMaps.
 * Secrets are left out: a hash of a credential is not to be written into a Deployment.
 */
import {createHash} from 'node:crypto'
import type {KubeObject, RenderedObject} from './types.js'

export const CONFIG_CHECKSUM_ANNOTATION = 'kpi.dev/config-checksum'

interface PodSpec {
  volumes?: Array<{configMap?: {name?: string}; projected?: {sources?: Array<{configMap?: {name?: string}}>}}>
  containers?: Container[]
  initContainers?: Container[]
}
interface Container {
  env?: Array<{valueFrom?: {configMapKeyRef?: {name?: string}}}>
  envFrom?: Array<{configMapRef?: {name?: string}}>
}

/** The names of the ConfigMaps a pod spec reads (volumes, env, envFrom). */
function configMapsRead(spec: PodSpec): string[] {
  const names = new Set<string>()
  for (const v of spec.volumes ?? []) {
    if (v.configMap?.name) names.add(v.configMap.name)
    for (const s of v.projected?.sources ?? []) if (s.configMap?.name) names.add(s.configMap.name)
  }
  for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
    for (const e of c.env ?? []) if (e.valueFrom?.configMapKeyRef?.name) names.add(e.valueFrom.configMapKeyRef.name)
    for (const e of c.envFrom ?? []) if (e.configMapRef?.name) names.add(e.configMapRef.name)
  }
  return [...names].sort()
}

/** Annotates every Deployment's pod template with a checksum of the rendered ConfigMaps it reads. */
export function addConfigChecksums(objects: RenderedObject[]): void {
  const configMaps = new Map<string, KubeObject>()
  for (const {object: o} of objects) if (o.apiVersion === 'v1' && o.kind === 'ConfigMap') configMaps.set(`${o.metadata.namespace}/${o.metadata.name}`, o)
  for (const {object: o} of objects) {
    if (o.apiVersion !== 'apps/v1' || o.kind !== 'Deployment') continue
    const template = (o.spec as {template?: {metadata?: {annotations?: Record<string, string>}; spec?: PodSpec}} | undefined)?.template
    if (!template?.spec) continue
    const read = configMapsRead(template.spec).flatMap((name) => {
      const cm = configMaps.get(`${o.metadata.namespace}/${name}`)
      return cm ? [[name, cm.data ?? {}, cm.binaryData ?? {}]] : []
    })
    if (!read.length) continue
    const sum = createHash('sha256').update(JSON.stringify(read)).digest('hex')
    template.metadata = {...template.metadata, annotations: {...template.metadata?.annotations, [CONFIG_CHECKSUM_ANNOTATION]: sum}}
  }
}
