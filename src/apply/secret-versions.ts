/**
 * A Deployment's pods read the Secrets they take env from once, at start: kpack's controller its
 * proxy (kpi-proxy, when the proxy URL carries credentials). A new proxy password would reach the
 * Secret and not the running controller. render/config-checksum.ts makes a changed ConfigMap a
 * rollout with a checksum, but a hash of a credential is not to be written into a Deployment, and
 * a rendered object cannot know anything else about a Secret.
 *
 * So at apply time the pod template gets the live resourceVersion of each Secret kpi renders data
 * for that it reads: the Secret is applied in an earlier stage; its resourceVersion changes with
 * every write to it (kpi writes it only when its data changes; another writer, a label say, rolls
 * the pods once for nothing), and it says nothing about the data. A changed Secret then rolls the
 * Deployments that read it, as a changed ConfigMap does.
 */
import type {Kube} from '../kube/client.js'
import {podReads, type PodSpecReads} from '../render/pod-reads.js'
import type {KubeObject, RenderedObject} from '../render/types.js'

export const SECRET_VERSIONS_ANNOTATION = 'kpi.dev/secret-versions'

interface Template {
  metadata?: {annotations?: Record<string, string>}
  spec?: PodSpecReads
}

const templateOf = (o: KubeObject): Template | undefined =>
  o.apiVersion === 'apps/v1' && o.kind === 'Deployment' ? (o.spec as {template?: Template} | undefined)?.template : undefined

/**
 * For each Deployment among `objects`, the Secrets (same namespace) kpi renders data for that its
 * pods read, by the Deployment's `namespace/name`. A Secret kpi renders empty for another writer to
 * fill (kpack's webhook-certs) is left out: its changes are not kpi's to roll out.
 */
export function secretReaders(objects: RenderedObject[]): Map<string, string[]> {
  const hasData = (o: KubeObject) => Object.keys((o as {data?: object}).data ?? {}).length + Object.keys((o as {stringData?: object}).stringData ?? {}).length > 0
  const rendered = new Set(objects.filter((o) => o.object.apiVersion === 'v1' && o.object.kind === 'Secret' && hasData(o.object))
    .map((o) => `${o.object.metadata.namespace}/${o.object.metadata.name}`))
  const out = new Map<string, string[]>()
  for (const {object: o} of objects) {
    const spec = templateOf(o)?.spec
    if (!spec) continue
    const ns = o.metadata.namespace
    const read = podReads(spec, 'Secret').filter((name) => rendered.has(`${ns}/${name}`))
    if (read.length) out.set(`${ns}/${o.metadata.name}`, read)
  }
  return out
}

/**
 * A copy of the Deployment whose pod template carries `name=resourceVersion` of each of `secrets`
 * (in its namespace) that exists; the object itself when none does.
 */
export async function withSecretVersions(kube: Kube, o: KubeObject, secrets: string[]): Promise<KubeObject> {
  const template = templateOf(o)
  if (!template || !secrets.length) return o
  const versions: string[] = []
  for (const name of secrets) {
    const live = await kube.get({apiVersion: 'v1', kind: 'Secret', name, namespace: o.metadata.namespace})
    if (live?.metadata.resourceVersion) versions.push(`${name}=${live.metadata.resourceVersion}`)
  }
  if (!versions.length) return o
  const spec = o.spec as Record<string, unknown>
  return {
    ...o,
    spec: {
      ...spec,
      template: {...template, metadata: {...template.metadata, annotations: {...template.metadata?.annotations, [SECRET_VERSIONS_ANNOTATION]: versions.join(',')}}},
    },
  }
}
