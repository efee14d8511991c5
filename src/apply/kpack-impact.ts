/**
 * What an upgrade will make kpack do to each app Image in the cluster, by kpack's own rules
 * (kpack pkg/reconciler/image/build_required.go; cited, not copied): against the Image's last
 * successful Build,
 * - BUILDPACK: a buildpack id@version the build used is no longer in the builder;
 * - STACK: the builder's run image (by digest) differs from the build's;
 * - LIFECYCLE: the builder's lifecycle version differs from the build's.
 * A build whose only reason is STACK, with the stack id unchanged, is a rebase; any other reason
 * is a rebuild; no reason, nothing happens. kpack does not judge an Image whose last build did not
 * succeed on these grounds, and neither does this.
 *
 * The builder after the upgrade is taken from the rendered objects and the images of the lock:
 * its stack's id and run image, the buildpacks of the store's buildpackages its order names
 * (with their components), and the lifecycle image's version label.
 */
import type {Bundle} from '../bundle/types.js'
import type {Kube} from '../kube/client.js'
import {conditionOf, type LiveObject} from '../kube/types.js'
import {isIndexMediaType, parseReference, repoOf, type ImageIndex, type ImageManifest, type RegistryClient} from '../oci/index.js'
import type {RenderedObject} from '../render/types.js'

export type Impact = 'rebuild' | 'rebase' | 'none' | 'unknown'
export type BuildReason = 'BUILDPACK' | 'STACK' | 'LIFECYCLE'

export interface ImageImpact {
  /** `team/app` */
  image: string
  builder: string
  impact: Impact
  reasons: BuildReason[]
  /** what changes, in words: `example/go@1.4.0 leaves the builder`, `run image sha256:a… -> sha256:b…` */
  details: string[]
}

interface BuildStatus {
  buildMetadata?: Array<{id: string; version: string}>
  stack?: {runImage?: string; id?: string}
  lifecycleVersion?: string
}

export interface FutureBuilder {
  name: string
  stackId: string
  runImage: string
  buildpacks: Set<string>
  lifecycleVersion?: string
}

/** `repo@sha256:…` -> `sha256:…`; a tag reference -> the tag (what go-containerregistry's Identifier() gives). */
export const identifier = (ref: string): string => (ref.includes('@') ? ref.slice(ref.lastIndexOf('@') + 1) : ref.slice(ref.lastIndexOf(':') + 1))

/** kpack's decision for one Image, given its last build's status and the builder to come. */
export function judgeImpact(build: BuildStatus, b: FutureBuilder): {impact: Impact; reasons: BuildReason[]; details: string[]} {
  const reasons: BuildReason[] = []
  const details: string[] = []
  const gone = (build.buildMetadata ?? []).filter((bp) => !b.buildpacks.has(`${bp.id}@${bp.version}`))
  if (gone.length) {
    reasons.push('BUILDPACK')
    details.push(`${gone.map((bp) => `${bp.id}@${bp.version}`).join(', ')} no longer in the builder`)
  }
  const oldRun = identifier(build.stack?.runImage ?? '')
  const newRun = identifier(b.runImage)
  if (oldRun !== newRun) {
    reasons.push('STACK')
    details.push(`run image ${oldRun.slice(0, 19)} -> ${newRun.slice(0, 19)}`)
  }
  if (b.lifecycleVersion !== undefined && (build.lifecycleVersion ?? '') !== b.lifecycleVersion) {
    reasons.push('LIFECYCLE')
    details.push(`lifecycle ${build.lifecycleVersion || '(none)'} -> ${b.lifecycleVersion}`)
  }
  if (!reasons.length) return {impact: 'none', reasons, details}
  const sameStack = (build.stack?.id ?? '') === b.stackId
  if (reasons.length === 1 && reasons[0] === 'STACK' && sameStack) return {impact: 'rebase', reasons, details}
  if (!sameStack) details.push(`stack id ${build.stack?.id ?? '(none)'} -> ${b.stackId}`)
  return {impact: 'rebuild', reasons, details}
}

async function imageConfig(client: RegistryClient, ref: string): Promise<{Labels?: Record<string, string>}> {
  const r = parseReference(ref)
  const repo = repoOf(r)
  let m = await client.getManifest(repo, r.digest ?? r.tag ?? 'latest')
  if (isIndexMediaType(m.mediaType)) {
    const idx = JSON.parse(m.bytes.toString('utf8')) as ImageIndex
    const pick = idx.manifests.find((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64') ?? idx.manifests[0]!
    m = await client.getManifest(repo, pick.digest)
  }
  const man = JSON.parse(m.bytes.toString('utf8')) as ImageManifest
  const chunks: Buffer[] = []
  for await (const c of await client.getBlob(repo, man.config.digest, man.config.size)) chunks.push(c as Buffer)
  return (JSON.parse(Buffer.concat(chunks).toString('utf8')) as {config?: {Labels?: Record<string, string>}}).config ?? {}
}

/** id@version of every buildpack a buildpackage holds (io.buildpacks.buildpack.layers: id -> version -> info). */
function packageBuildpacks(labels: Record<string, string> | undefined): string[] {
  try {
    const layers = JSON.parse(labels?.['io.buildpacks.buildpack.layers'] ?? '{}') as Record<string, Record<string, unknown>>
    return Object.entries(layers).flatMap(([id, versions]) => Object.keys(versions).map((v) => `${id}@${v}`))
  } catch {
    return []
  }
}

function lifecycleVersionOf(labels: Record<string, string> | undefined): string | undefined {
  if (labels?.['io.buildpacks.lifecycle.version']) return labels['io.buildpacks.lifecycle.version']
  try {
    return (JSON.parse(labels?.['io.buildpacks.lifecycle.metadata'] ?? '{}') as {version?: string}).version
  } catch {
    return undefined
  }
}

/** The builders of the render as kpack will assemble them. */
export async function futureBuilders(lock: Bundle, objects: RenderedObject[], client: RegistryClient): Promise<Map<string, FutureBuilder>> {
  const find = (kind: string, name: string, ns?: string) => objects.find((o) => o.object.kind === kind && o.object.metadata.name === name && (ns === undefined || o.object.metadata.namespace === ns))?.object
  const labels = new Map<string, Promise<Record<string, string> | undefined>>()
  const labelsOf = (ref: string) => {
    if (!labels.has(ref)) labels.set(ref, imageConfig(client, ref).then((c) => c.Labels, () => undefined))
    return labels.get(ref)!
  }
  const lifecycleVersion = lifecycleVersionOf(await labelsOf(lock.lifecycle.image))
  const out = new Map<string, FutureBuilder>()
  for (const {object} of objects) {
    if (object.kind !== 'ClusterBuilder' && object.kind !== 'Builder') continue
    const spec = object.spec as {stack?: {name: string}; store?: {name: string}; order?: Array<{group?: Array<{id?: string}>}>}
    const stack = find('ClusterStack', spec.stack?.name ?? '')?.spec as {id?: string; runImage?: {image?: string}} | undefined
    const store = find('ClusterStore', spec.store?.name ?? '')?.spec as {sources?: Array<{image: string}>} | undefined
    const ids = new Set((spec.order ?? []).flatMap((o) => (o.group ?? []).map((g) => g.id)).filter(Boolean))
    const buildpacks = new Set<string>()
    for (const src of store?.sources ?? []) {
      const all = packageBuildpacks(await labelsOf(src.image))
      if (all.some((bp) => ids.has(bp.slice(0, bp.lastIndexOf('@'))))) all.forEach((bp) => buildpacks.add(bp))
    }
    const key = `${object.kind}/${object.metadata.namespace ?? ''}/${object.metadata.name}`
    out.set(key, {name: `${object.kind} ${object.metadata.namespace ? `${object.metadata.namespace}/` : ''}${object.metadata.name}`, stackId: stack?.id ?? '', runImage: stack?.runImage?.image ?? '', buildpacks, lifecycleVersion})
  }
  return out
}

async function lastBuild(kube: Kube, image: LiveObject): Promise<LiveObject | undefined> {
  const ns = image.metadata.namespace
  const name = (image.status as {latestBuildRef?: string} | undefined)?.latestBuildRef
  if (name) return kube.get({apiVersion: 'kpack.io/v1alpha2', kind: 'Build', name, namespace: ns})
  const builds = await kube.list('kpack.io/v1alpha2', 'Build', {namespace: ns, labelSelector: `image.kpack.io/image=${image.metadata.name}`})
  return builds.sort((a, b) => Number(a.metadata.labels?.['image.kpack.io/buildNumber'] ?? 0) - Number(b.metadata.labels?.['image.kpack.io/buildNumber'] ?? 0)).at(-1)
}

/** Every kpack Image in the cluster, judged against the builders to come. */
export async function kpackImpact(kube: Kube, future: () => Promise<Map<string, FutureBuilder>>): Promise<ImageImpact[]> {
  if (!(await kube.resourceFor('kpack.io/v1alpha2', 'Image'))) return []
  const images = await kube.list('kpack.io/v1alpha2', 'Image')
  // the registry is read only when there is an Image to judge
  const builders = images.length ? await future() : new Map<string, FutureBuilder>()
  const out: ImageImpact[] = []
  for (const img of images) {
    const name = `${img.metadata.namespace}/${img.metadata.name}`
    const ref = ((img.spec as {builder?: {kind?: string; name?: string; namespace?: string}}).builder) ?? {}
    const kind = ref.kind ?? 'ClusterBuilder'
    const key = `${kind}/${kind === 'Builder' ? ref.namespace ?? img.metadata.namespace : ''}/${ref.name ?? ''}`
    const builderName = `${kind} ${kind === 'Builder' ? `${ref.namespace ?? img.metadata.namespace}/` : ''}${ref.name ?? ''}`
    const b = builders.get(key)
    if (!b) {
      out.push({image: name, builder: builderName, impact: 'unknown', reasons: [], details: ['its builder is not part of the platform kpi installs']})
      continue
    }
    const build = await lastBuild(kube, img)
    if (!build || conditionOf(build, 'Succeeded')?.status !== 'True') {
      out.push({image: name, builder: builderName, impact: 'unknown', reasons: [], details: ['no successful build yet: kpack judges platform changes against the last successful build']})
      continue
    }
    out.push({image: name, builder: builderName, ...judgeImpact((build.status ?? {}) as BuildStatus, b)})
  }
  return out.sort((a, b) => (a.image < b.image ? -1 : 1))
}
