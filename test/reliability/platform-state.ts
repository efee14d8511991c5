/**
 * "Never a mix": which revision the cluster runs, judged from the cluster itself. Each sample
 * version's rendered objects (kpi render, independent of any revision record) are compared with
 * the live ones: every Deployment's container images, every kpack resource's spec, every
 * ConfigMap's data. The platform is version V when every such object V renders is live as V renders
 * it and every one only the other version renders is gone; anything else is a mix, listed.
 */
import type {Kube} from '../../src/kube/client.js'
import {isKpackResource} from '../../src/kube/checks.js'
import {describeRef, refOf, type LiveObject} from '../../src/kube/types.js'
import type {KubeObject} from '../../src/render/types.js'
import {contains} from '../helpers/platform.js'

export type Rendered = Map<string, KubeObject>

const compared = (o: KubeObject) => (o.kind === 'Deployment' && o.apiVersion === 'apps/v1') || (o.kind === 'ConfigMap' && o.apiVersion === 'v1') || isKpackResource(o)

/** The objects of a render (`kpi render --json` output) this comparison looks at, by identity. */
export function comparable(renderJson: string): Rendered {
  const objects = (JSON.parse(renderJson) as {objects: Array<{object: KubeObject}>}).objects.map((o) => o.object)
  return new Map(objects.filter(compared).map((o) => [describeRef(refOf(o)), o]))
}

type Containers = Array<{name: string; image?: string}>
function images(o: KubeObject | LiveObject): string {
  const spec = (o.spec as {template?: {spec?: {containers?: Containers; initContainers?: Containers}}}).template?.spec
  return JSON.stringify([...(spec?.initContainers ?? []), ...(spec?.containers ?? [])].map((c) => `${c.name}=${c.image}`).sort())
}

/** Whether the live object is as `want` has it (the API server and kpack's webhook add defaults). */
function same(live: LiveObject, want: KubeObject): boolean {
  if (want.kind === 'Deployment') return images(live) === images(want)
  if (want.kind === 'ConfigMap') return contains(live.data ?? {}, want.data ?? {})
  return contains(live.spec, want.spec)
}

/**
 * What differs between the cluster and `version`'s render: objects missing or not as rendered,
 * and objects only `other` renders that are still there. `kept` names objects a rollback leaves on
 * purpose (and says so in its output).
 */
/** The objects both renders have whose compared parts differ: what tells the versions apart. */
export function distinguishing(a: Rendered, b: Rendered): string[] {
  return [...a].filter(([id, o]) => {
    const other = b.get(id)
    if (!other) return false
    if (o.kind === 'Deployment') return images(o) !== images(other)
    return JSON.stringify(o.kind === 'ConfigMap' ? o.data : o.spec) !== JSON.stringify(other.kind === 'ConfigMap' ? other.data : other.spec)
  }).map(([id]) => id)
}

/** The live object, or undefined when it or its kind is not there (a kind whose CRD is gone). */
async function live(kube: Kube, o: KubeObject): Promise<LiveObject | undefined> {
  if (!(await kube.resourceFor(o.apiVersion, o.kind))) return undefined
  return kube.get(refOf(o))
}

export async function differences(kube: Kube, version: Rendered, other: Rendered, kept: Set<string> = new Set()): Promise<string[]> {
  const out: string[] = []
  for (const [id, want] of version) {
    const l = await live(kube, want)
    if (!l) out.push(`${id}: missing`)
    else if (!same(l, want)) out.push(`${id}: not as rendered (${want.kind === 'Deployment' ? images(l) : JSON.stringify(want.kind === 'ConfigMap' ? l.data : l.spec).slice(0, 300)})`)
  }
  for (const [id, o] of other) {
    if (version.has(id) || kept.has(id)) continue
    if (await live(kube, o)) out.push(`${id}: still there, though only the other version has it`)
  }
  return out
}
