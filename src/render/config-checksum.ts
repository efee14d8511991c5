/**
 * A Deployment's pods read the ConfigMaps they mount or take env from once, at start: kpack's
 * controller its helper images (env from ConfigMaps), cert-injection-webhook the CA and proxy it
 * writes into build pods (files read at start-up), the controller kpi's CA bundle. An upgrade that
 * changes only such a ConfigMap (a new CA, a patched helper image) would leave the old values
 * running. A checksum of those ConfigMaps in the pod template makes the change a rollout, as
 * Helm charts do it and as kpack's own release does with kapp's versioned ConfigMaps.
 * Secrets are left out: a hash of a credential is not to be written into a Deployment (the
 * Secrets kpi renders roll their readers at apply time instead: apply/secret-versions.ts).
 */
import {createHash} from 'node:crypto'
import {podReads, type PodSpecReads} from './pod-reads.js'
import type {KubeObject, RenderedObject} from './types.js'

export const CONFIG_CHECKSUM_ANNOTATION = 'kpi.dev/config-checksum'

/** Annotates every Deployment's pod template with a checksum of the rendered ConfigMaps it reads. */
export function addConfigChecksums(objects: RenderedObject[]): void {
  const configMaps = new Map<string, KubeObject>()
  for (const {object: o} of objects) if (o.apiVersion === 'v1' && o.kind === 'ConfigMap') configMaps.set(`${o.metadata.namespace}/${o.metadata.name}`, o)
  for (const {object: o} of objects) {
    if (o.apiVersion !== 'apps/v1' || o.kind !== 'Deployment') continue
    const template = (o.spec as {template?: {metadata?: {annotations?: Record<string, string>}; spec?: PodSpecReads}} | undefined)?.template
    if (!template?.spec) continue
    const read = podReads(template.spec, 'ConfigMap').flatMap((name) => {
      const cm = configMaps.get(`${o.metadata.namespace}/${name}`)
      return cm ? [[name, cm.data ?? {}, cm.binaryData ?? {}]] : []
    })
    if (!read.length) continue
    const sum = createHash('sha256').update(JSON.stringify(read)).digest('hex')
    template.metadata = {...template.metadata, annotations: {...template.metadata?.annotations, [CONFIG_CHECKSUM_ANNOTATION]: sum}}
  }
}
