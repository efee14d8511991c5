/**
 * Preflight: everything install needs is checked before anything is applied, and any failure
 * names the image, permission or object at fault.
 * - the cluster answers and runs Kubernetes >= 1.29;
 * - an installation kpi does not manage is not in the way (unless --adopt), and a kpi one is
 *   either this same install (resume it, or reconcile it when it is deployed with these inputs)
 *   or a reason to use `kpi upgrade`;
 * - the user may get, create and patch every kind the render applies, where it applies them
 *   (SelfSubjectAccessReview), and write revision records;
 * - every image of the render exists at its digest in the destination registry, asked with the
 *   credentials the cluster will use: those of the values file, not the user's docker config
 *   (an upgrade or rollback asks for those the deployed revision does not run: RunningImages).
 */
import {KpiError} from '../errors.js'
import type {Kube, ResourceAttributes} from '../kube/client.js'
import {checkFor} from '../kube/checks.js'
import {describeRef, groupOf} from '../kube/types.js'
import {createRegistryClient, type Credentials, dockerConfigCredentials, normaliseRegistry, type OciClientOptions, parseReference, type RegistryClient, repoOf} from '../oci/index.js'
import type {OnEvent} from '../progress/events.js'
import {imageReferences} from '../render/guard.js'
import {MANAGED_BY, MANAGED_BY_LABEL, type KubeObject, type RenderedObject} from '../render/types.js'
import type {RegistryValues} from '../values/types.js'
import {REVISION_NAMESPACE} from '../namespaces.js'
import type {RevisionRecord} from '../revision/record.js'
import {nodeCapacityWarnings} from './node-capacity.js'
import {latestRevision, type StoredRevision} from '../revision/store.js'

export const MIN_KUBERNETES = {major: 1, minor: 29}

/**
 * - `fresh`: nothing here; install from revision 1
 * - `resume`: an install that did not finish (pending-install or failed); run it again, same revision
 * - `reconcile`: installed with these very inputs; apply again, expect no change
 * - `adopt`: kpack is here but not kpi's; take it over (--adopt)
 */
export type InstallMode = 'fresh' | 'resume' | 'reconcile' | 'adopt'

export interface PreflightResult {
  serverVersion: string
  mode: InstallMode
  existing?: StoredRevision
  images: number
  /** what kpi found that it does not manage (with --adopt) */
  adopted: string[]
}

export interface PreflightInput {
  kube: Kube
  objects: RenderedObject[]
  registry: RegistryValues
  /** the digest of these inputs (revision record inputsDigest) */
  inputsDigest: string
  adopt: boolean
  /** registry client settings of the check (CA, plain HTTP); credentials come from the values */
  clientOptions: OciClientOptions
  onEvent: OnEvent
  /** for tests: a ready client instead of one built from clientOptions */
  client?: RegistryClient
}

export type Task = (t: string, s: 'start' | 'done' | 'failed', m?: string) => void

export const preflightTask = (onEvent: OnEvent): Task => (t, status, message) => onEvent({type: 'task', stage: 'preflight', task: t, status, message})

/** The cluster answers and runs a Kubernetes kpi supports. */
export async function checkCluster(kube: Kube, task: Task): Promise<string> {
  task('cluster', 'start')
  const v = await kube.version()
  if (!(v.major > MIN_KUBERNETES.major || (v.major === MIN_KUBERNETES.major && v.minor >= MIN_KUBERNETES.minor))) {
    throw new KpiError('failed', `preflight: the cluster at ${kube.server} runs Kubernetes ${v.gitVersion}; kpi needs ${MIN_KUBERNETES.major}.${MIN_KUBERNETES.minor} or newer`, {
      hint: 'upgrade the cluster, or choose another one with --context',
    })
  }
  task('cluster', 'done', `Kubernetes ${v.gitVersion} at ${kube.server}`)
  return v.gitVersion
}

/**
 * Images the deployed revision runs: an upgrade or rollback that keeps one adds no dependency on
 * it (its Deployments keep their pods, kpack already has it), so the registry is not asked about
 * it again; were it gone, the running platform would be broken the same way before and after.
 * Every image the operation brings in is asked for, so one that cannot be pulled still stops it
 * before anything is touched.
 */
export interface RunningImages {
  revision: number
  refs: Set<string>
}

type Revision = {record: {revision: number; objects: RenderedObject[]}}

/** None when an operation after the deployed revision (a failed upgrade left as it is) may have replaced its pods. */
export const runningImages = (deployed: Revision | undefined, later: readonly Revision[]): RunningImages | undefined =>
  deployed && !later.length ? {revision: deployed.record.revision, refs: new Set(imageReferences(deployed.record.objects).map((f) => f.ref))} : undefined

type ImageCheckInput = Pick<PreflightInput, 'objects' | 'registry' | 'clientOptions' | 'client'> & {running?: RunningImages}

/**
 * The registry check started ahead, while the cluster is read (it needs only the render and the
 * values), for checkAccessAndImages to await: the images are the longest part of preflight.
 * Its failure is reported there, in order, never as an unhandled rejection.
 */
export function startImageCheck(p: ImageCheckInput, task: Task): {images: Promise<number>; cancel(): void} {
  // once the rest of preflight failed, no more HEADs and no more progress from this check
  let cancelled = false
  const images = imagesExist(p, (t, st, m) => cancelled || task(t, st, m), () => cancelled)
  images.catch(() => {})
  return {images, cancel: () => void (cancelled = true)}
}

/**
 * Permissions, images and node capacity are independent: check them together, report permissions
 * first. Capacity only warns (node-capacity.ts).
 */
export async function checkAccessAndImages(p: Pick<PreflightInput, 'kube' | 'onEvent'> & ImageCheckInput & {deletes?: KubeObject[]; images?: Promise<number>}, task: Task): Promise<number> {
  const capacity = nodeCapacityWarnings(p.kube, p.objects.map((r) => r.object), task)
  const [perms, images, fit] = await Promise.allSettled([permissions(p.kube, p.objects, task, p.deletes ?? []), p.images ?? imagesExist(p, task), capacity])
  if (perms.status === 'rejected') throw perms.reason
  if (images.status === 'rejected') throw images.reason
  if (fit.status === 'fulfilled') for (const message of fit.value) p.onEvent({type: 'warning', message})
  return images.value
}

export async function preflight(p: PreflightInput): Promise<PreflightResult> {
  const {kube} = p
  const task = preflightTask(p.onEvent)
  const imageCheck = startImageCheck(p, task)
  const cluster = async () => {
    const serverVersion = await checkCluster(kube, task)
    task('existing installation', 'start')
    const found = await existingInstallation(kube, p)
    task('existing installation', 'done', describeMode(found.mode, found.existing?.record, found.adopted))
    return {serverVersion, ...found}
  }
  const {serverVersion, mode, existing, adopted} = await cluster().catch((e) => {
    imageCheck.cancel()
    throw e
  })
  const images = await checkAccessAndImages({...p, images: imageCheck.images}, task)
  return {serverVersion, mode, existing, images, adopted}
}

function describeMode(mode: InstallMode, r: RevisionRecord | undefined, adopted: string[]): string {
  switch (mode) {
    case 'fresh': return 'none: a fresh install'
    case 'resume': return `revision ${r!.revision} (${r!.status}): resuming it`
    case 'reconcile': return `revision ${r!.revision} deployed with these inputs: checking that nothing drifted`
    case 'adopt': return `adopting what kpi does not manage: ${adopted.join(', ')}`
  }
}

// ---- existing installation ----

/** Objects that say kpack is installed; any of them without kpi's label means someone else installed it. */
const KPACK_MARKERS = [
  {apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'images.kpack.io'},
  {apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'clusterbuilders.kpack.io'},
  {apiVersion: 'apps/v1', kind: 'Deployment', name: 'kpack-controller', namespace: 'kpack'},
]

async function existingInstallation(kube: Kube, p: PreflightInput): Promise<{mode: InstallMode; existing?: StoredRevision; adopted: string[]}> {
  const latest = await latestRevision(kube)
  if (latest) {
    const r = latest.record
    if (r.operation === 'install' && (r.status === 'pending-install' || r.status === 'failed')) return {mode: 'resume', existing: latest, adopted: []}
    if (r.status === 'deployed' && r.inputsDigest === p.inputsDigest) return {mode: 'reconcile', existing: latest, adopted: []}
    if (r.status === 'deployed') {
      throw new KpiError('conflict', `preflight: ${r.name} ${r.version} is already installed (revision ${r.revision}) with other inputs`, {
        hint: 'use kpi upgrade -b LOCK -f VALUES to change an installed platform',
      })
    }
    throw new KpiError('conflict', `preflight: revision ${r.revision} of ${r.name} is ${r.status} (${r.operation}): kpi install does not start over an ${r.operation}`, {
      hint: `finish it with kpi ${r.operation === 'rollback' ? 'rollback' : 'upgrade'}, or see kpi status`,
    })
  }
  const foreign: string[] = []
  for (const m of KPACK_MARKERS) {
    const live = await kube.get(m)
    if (live && live.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) foreign.push(describeRef(live))
  }
  // kpi's own objects without a revision: the record was deleted by hand; same remedy
  const ours = await kube.get({apiVersion: 'apps/v1', kind: 'Deployment', name: 'kpack-controller', namespace: 'kpack'})
  if (ours?.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY && !foreign.length) foreign.push(`${describeRef(ours)} (kpi's, but no revision record in ${REVISION_NAMESPACE})`)
  if (!foreign.length) return {mode: 'fresh', adopted: []}
  if (p.adopt) return {mode: 'adopt', adopted: foreign}
  throw new KpiError('conflict', `preflight: kpack is already installed and kpi does not manage it: ${foreign.join(', ')}`, {
    hint: 'pass --adopt to take it over (kpi then owns and changes these objects), or choose another cluster',
  })
}

// ---- permissions ----

interface Need {
  group: string
  resource: string
  namespace?: string
  verbs: string[]
  /** e.g. `ClusterBuilder` */
  kind: string
}

async function resourceNames(kube: Kube, objects: KubeObject[]): Promise<Map<string, {resource: string; namespaced: boolean}>> {
  // CRDs of the render name resources the cluster does not serve yet
  const fromCrds = new Map<string, {resource: string; namespaced: boolean}>()
  for (const o of objects) {
    if (o.kind !== 'CustomResourceDefinition') continue
    const spec = o.spec as {group: string; names: {kind: string; plural: string}; scope: string; versions: Array<{name: string}>}
    for (const v of spec.versions) fromCrds.set(`${spec.group}/${v.name}/${spec.names.kind}`, {resource: spec.names.plural, namespaced: spec.scope === 'Namespaced'})
  }
  const out = new Map<string, {resource: string; namespaced: boolean}>()
  const first = new Map<string, KubeObject>()
  for (const o of objects) if (!first.has(`${o.apiVersion}/${o.kind}`)) first.set(`${o.apiVersion}/${o.kind}`, o)
  // one discovery request per group version, all at once (the client caches them for the stages)
  const served = new Map(await Promise.all([...first].filter(([key]) => !fromCrds.has(key)).map(async ([key, o]) => [key, await kube.resourceFor(o.apiVersion, o.kind)] as const)))
  for (const [key, o] of first) {
    const crd = fromCrds.get(key)
    if (crd) {
      out.set(key, crd)
      continue
    }
    const r = served.get(key)
    if (!r) {
      throw new KpiError('failed', `preflight: the cluster does not serve ${o.kind} in ${o.apiVersion} (needed for ${describeRef(o)})`, {
        hint: 'the cluster is missing an API kpack needs; check its Kubernetes version',
      })
    }
    out.set(key, {resource: r.name, namespaced: r.namespaced})
  }
  return out
}

async function permissions(kube: Kube, rendered: RenderedObject[], task: Task, deletes: KubeObject[]): Promise<void> {
  task('permissions', 'start')
  const objects = rendered.map((r) => r.object)
  // Every verb on every resource of every group, cluster-wide (what `kubectl auth can-i '*' '*'`
  // asks): allowed means each check below is, so one review answers for a cluster admin, the
  // usual installer, instead of ~90 (0.6 s of preflight on a loaded machine). Anything less
  // asks each one, to name what is denied. Asked while the kinds are looked up.
  const [admin, names] = await Promise.all([kube.canI({verb: '*', group: '*', resource: '*'}), resourceNames(kube, [...objects, ...deletes])])
  const needs = new Map<string, Need>()
  const need = (n: Need) => {
    const key = `${n.group}/${n.resource}/${n.namespace ?? ''}`
    const had = needs.get(key)
    needs.set(key, had ? {...had, verbs: [...new Set([...had.verbs, ...n.verbs])]} : n)
  }
  for (const o of objects) {
    const r = names.get(`${o.apiVersion}/${o.kind}`)!
    // server-side apply is a patch, or a create when the object is new; kpi reads each one first
    need({group: groupOf(o.apiVersion), resource: r.resource, namespace: r.namespaced ? o.metadata.namespace : undefined, verbs: ['get', 'create', 'patch'], kind: o.kind})
  }
  need({group: '', resource: 'namespaces', verbs: ['get', 'create', 'patch'], kind: 'Namespace'})
  for (const o of deletes) {
    const r = names.get(`${o.apiVersion}/${o.kind}`)!
    need({group: groupOf(o.apiVersion), resource: r.resource, namespace: r.namespaced ? o.metadata.namespace : undefined, verbs: ['get', 'delete'], kind: o.kind})
  }
  // what the gates read to judge readiness (kube/checks.ts): a rollout's pods (one that can never
  // be scheduled), a webhook Service's EndpointSlices and the pods behind them. Denied, the first
  // gate fails with a forbidden error after its stage changed objects, and so does the rollback.
  for (const o of objects) {
    const check = checkFor(o)
    if (check !== 'rollout' && check !== 'endpoints') continue
    need({group: '', resource: 'pods', namespace: o.metadata.namespace, verbs: check === 'rollout' ? ['list'] : ['get'], kind: 'Pod'})
    if (check === 'endpoints') need({group: 'discovery.k8s.io', resource: 'endpointslices', namespace: o.metadata.namespace, verbs: ['list'], kind: 'EndpointSlice'})
  }
  // revision records (and removing the oldest past --history-max), and the operation lease
  need({group: '', resource: 'secrets', namespace: REVISION_NAMESPACE, verbs: ['get', 'list', 'create', 'update', 'delete'], kind: 'Secret'})
  need({group: 'coordination.k8s.io', resource: 'leases', namespace: REVISION_NAMESPACE, verbs: ['get', 'create', 'update'], kind: 'Lease'})
  const checks: Array<{attrs: ResourceAttributes; kind: string}> = []
  for (const n of needs.values()) {
    for (const verb of n.verbs) checks.push({attrs: {verb, group: n.group, resource: n.resource, ...(n.namespace ? {namespace: n.namespace} : {})}, kind: n.kind})
  }
  if (admin.allowed) {
    task('permissions', 'done', `allowed everything (${checks.length} access reviews implied)`)
    return
  }
  const results = await Promise.all(checks.map(async (c) => ({...c, result: await kube.canI(c.attrs)})))
  const denied = results.filter((r) => !r.result.allowed)
  if (denied.length) {
    // group by resource: `create, patch clusterbuilders.kpack.io (cluster-wide)`
    const byRes = new Map<string, string[]>()
    for (const d of denied) {
      const what = `${d.attrs.resource}${d.attrs.group ? `.${d.attrs.group}` : ''} ${d.attrs.namespace ? `in namespace ${d.attrs.namespace}` : '(cluster-wide)'}`
      byRes.set(what, [...(byRes.get(what) ?? []), d.attrs.verb])
    }
    const list = [...byRes].map(([what, verbs]) => `${verbs.join(', ')} ${what}`)
    task('permissions', 'failed', `${denied.length} denied`)
    throw new KpiError('auth', `preflight: the user of context ${kube.context} may not ${list.slice(0, 6).join('; ')}${list.length > 6 ? `; and ${list.length - 6} more` : ''}`, {
      hint: 'install needs cluster-admin or an equivalent role; ask a cluster admin, or use another --context',
      details: {denied: list},
    })
  }
  task('permissions', 'done', `${checks.length} access reviews allowed`)
}

// ---- images ----

/** The credentials the cluster will pull with: those of the values file, for the registry it names. */
export function valuesCredentials(r: RegistryValues): (registry: string) => Promise<Credentials | undefined> {
  const server = normaliseRegistry(r.server).toLowerCase()
  const fromDockerConfig = dockerConfigCredentials(r.dockerConfigJson, 'registry.dockerConfigJson of the values file')
  return async (registry) => {
    const host = normaliseRegistry(registry).toLowerCase()
    const fromConfig = fromDockerConfig(registry)
    if (fromConfig) return fromConfig
    if (host === server && r.username && r.password) return {username: r.username, password: r.password, source: 'registry.username/registry.password of the values file'}
    return undefined
  }
}

async function imagesExist(p: ImageCheckInput, task: Task, cancelled: () => boolean = () => false): Promise<number> {
  const found = imageReferences(p.objects)
  const byRef = new Map<string, string[]>()
  for (const f of found) {
    if (!f.ref.includes('@')) continue
    byRef.set(f.ref, [...(byRef.get(f.ref) ?? []), f.object])
  }
  const refs = [...byRef.keys()].filter((r) => !p.running?.refs.has(r))
  const kept = byRef.size - refs.length
  const keptNote = kept ? `; ${kept} run by revision ${p.running!.revision}, not asked again` : ''
  task('images', 'start', `${byRef.size} images${kept ? `, ${refs.length} new` : ''}`)
  const client = p.client ?? createRegistryClient({...p.clientOptions, credentials: valuesCredentials(p.registry)})
  const missing: string[] = []
  try {
    let next = 0
    let stop = false
    const worker = async () => {
      while (next < refs.length && !stop && !cancelled()) {
        const ref = refs[next++]!
        const parsed = parseReference(ref)
        let desc
        try {
          desc = await client.headManifest(repoOf(parsed), parsed.digest!)
        } catch (e) {
          const err = e as KpiError
          stop = true
          throw new KpiError(err.kind ?? 'failed', `preflight: cannot check image ${ref}: ${err.message}`, {
            hint: err.kind === 'auth' ? 'the cluster will pull with the registry credentials of the values file; fix registry.username/registry.password there'
              : err.kind === 'tls' ? 'put the registry CA in caCerts of the values file (kpack must trust it too); --ca-cert only helps this check'
                : err.hint,
            cause: e,
          })
        }
        if (!desc) missing.push(`${ref} (used by ${byRef.get(ref)!.join(', ')})`)
      }
    }
    await Promise.all(Array.from({length: Math.min(8, refs.length)}, worker))
  } finally {
    if (!p.client) await client.close()
  }
  if (missing.length) {
    task('images', 'failed', `${missing.length} missing`)
    throw new KpiError('not-found', `preflight: ${missing.length === 1 ? 'image' : `${missing.length} images missing:`} ${missing.join('; ')}${missing.length === 1 ? ' is not in the registry' : ''}`, {
      hint: 'relocate the bundle to this registry again (kpi relocate ... --lock-output) and install with that lock',
    })
  }
  task('images', 'done', `${refs.length} images present at their digests${keptNote}`)
  return byRef.size
}
