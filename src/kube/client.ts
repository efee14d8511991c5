/**
 * The Kubernetes client kpi needs and nothing more: version, access reviews, server-side apply
 * (field manager `kpi`), get/list/create/replace/delete, status writes and events. Paths come from
 * API discovery, so any kind the cluster serves (kpack's CRDs included) works the same way.
 *
 * Force on conflicts: `apply` never forces by itself. The installer applies without force, and
 * when another field manager owns a field kpi sets (someone ran `kubectl edit`, an HPA scaled a
 * Deployment), it reports the conflict and applies again with force: the render is the desired
 * state and kpi converges to it, but never silently.
 */
import {KpiError} from '../errors.js'
import {loadKubeConfig, type KubeTarget} from './config.js'
import {apiError} from './errors.js'
import {createRequester, type KubeResponse, type Requester} from './http.js'
import {describeRef, groupOf, refOf, type KubeEvent, type LiveObject, type ObjectRef} from './types.js'

export const FIELD_MANAGER = 'kpi'

export interface ApiResource {
  name: string
  namespaced: boolean
  kind: string
  verbs: string[]
}

export interface ResourceAttributes {
  verb: string
  group: string
  resource: string
  namespace?: string
  name?: string
  subresource?: string
}

export interface AccessResult {
  allowed: boolean
  reason?: string
}

export interface ApplyOptions {
  dryRun?: boolean
  /** take fields owned by other managers (see the module comment) */
  force?: boolean
  fieldManager?: string
}

export interface ListOptions {
  namespace?: string
  labelSelector?: string
  fieldSelector?: string
  /**
   * from the API server's cache as it is (resourceVersion 0), not a read as fresh as etcd: a
   * fresh LIST waits for the cache to catch up with the newest write of any kind (30-100 ms
   * measured right after kpi's own writes). For what a moment's lag cannot mislead.
   */
  cached?: boolean
}

export interface ServerVersion {
  gitVersion: string
  major: number
  minor: number
}

export interface Kube {
  /** the API server URL */
  server: string
  context: string
  /** the kubeconfig turns TLS verification of the API server off (insecure-skip-tls-verify) */
  tlsUnverified: boolean
  version(): Promise<ServerVersion>
  /** the resource (plural, scope) of a kind; undefined when the cluster does not serve it */
  resourceFor(apiVersion: string, kind: string): Promise<ApiResource | undefined>
  canI(attrs: ResourceAttributes): Promise<AccessResult>
  apply(obj: LiveObject, opts?: ApplyOptions): Promise<LiveObject>
  get(ref: ObjectRef): Promise<LiveObject | undefined>
  list(apiVersion: string, kind: string, opts?: ListOptions): Promise<LiveObject[]>
  create(obj: LiveObject): Promise<LiveObject>
  /** PUT with the object's resourceVersion: a concurrent writer gets a 409 conflict */
  replace(obj: LiveObject): Promise<LiveObject>
  delete(ref: ObjectRef): Promise<boolean>
  /** merge-patch the status subresource, as controllers write status */
  patchStatus(ref: ObjectRef, status: Record<string, unknown>): Promise<LiveObject>
  /** the newest events about an object, newest last */
  events(obj: LiveObject, limit?: number): Promise<KubeEvent[]>
  /**
   * Watches the objects of a kind (in a namespace) from now: `onChange` gets each one as it is
   * added or changed, the matching ones as they are first. Ends at the returned stop(), when the
   * server ends it (5 minutes at most) or on any error, silently: callers poll besides.
   */
  watch(apiVersion: string, kind: string, opts: {namespace?: string; labelSelector?: string}, onChange: (obj: LiveObject) => void): () => void
  /** the raw requester, for reads kpi has no method for */
  request: Requester
  close(): void
}

export interface KubeClientOptions extends KubeTarget {
  env?: NodeJS.ProcessEnv
}

export async function createKubeClient(opts: KubeClientOptions = {}): Promise<Kube> {
  const loaded = loadKubeConfig(opts, opts.env)
  const {request, close} = await createRequester(loaded)
  const server = loaded.server
  const discovery = new Map<string, Promise<ApiResource[] | undefined>>()

  const call = async <T>(what: string, method: string, path: string, o: Parameters<Requester>[2] = {}, ok: number[] = [200, 201]): Promise<KubeResponse<T>> => {
    const res = await request<T>(method, path, o)
    if (!ok.includes(res.status)) throw apiError(res, what, server)
    return res
  }

  async function groupResources(apiVersion: string, refresh: boolean): Promise<ApiResource[] | undefined> {
    if (refresh) discovery.delete(apiVersion)
    let p = discovery.get(apiVersion)
    if (!p) {
      const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`
      p = request<{resources?: ApiResource[]}>('GET', path).then((res) => {
        if (res.status === 404) return undefined
        if (res.status !== 200) throw apiError(res, `discover ${apiVersion}`, server)
        return res.body.resources ?? []
      })
      discovery.set(apiVersion, p)
      p.catch(() => discovery.delete(apiVersion))
    }
    return p
  }

  async function resourceFor(apiVersion: string, kind: string): Promise<ApiResource | undefined> {
    const find = (rs: ApiResource[] | undefined) => rs?.find((r) => r.kind === kind && !r.name.includes('/'))
    // a CRD established a moment ago is not in an earlier discovery answer: ask once more
    return find(await groupResources(apiVersion, false)) ?? find(await groupResources(apiVersion, true))
  }

  async function pathOf(ref: ObjectRef, opts: {collection?: boolean; subresource?: string} = {}): Promise<string> {
    const r = await resourceFor(ref.apiVersion, ref.kind)
    if (!r) {
      throw new KpiError('not-found', `${describeRef(ref)}: the cluster does not serve ${ref.kind} in ${ref.apiVersion}`, {
        hint: groupOf(ref.apiVersion).endsWith('kpack.io') ? 'kpack\'s CRDs are not installed (kpi install applies them first)' : 'check the Kubernetes version of the cluster',
      })
    }
    const root = ref.apiVersion.includes('/') ? `/apis/${ref.apiVersion}` : `/api/${ref.apiVersion}`
    // a collection without a namespace is the cluster-wide list
    const ns = r.namespaced && (ref.namespace || !opts.collection) ? `/namespaces/${encodeURIComponent(ref.namespace ?? 'default')}` : ''
    const name = opts.collection ? '' : `/${encodeURIComponent(ref.name)}`
    return `${root}${ns}/${r.name}${name}${opts.subresource ? `/${opts.subresource}` : ''}`
  }

  const kube: Kube = {
    server,
    context: loaded.context,
    tlsUnverified: server.startsWith('https:') && loaded.cluster.skipTLSVerify,
    request,
    close,
    resourceFor,

    async version() {
      const res = await call<{gitVersion: string; major: string; minor: string}>('read the server version', 'GET', '/version')
      const {gitVersion, major, minor} = res.body
      return {gitVersion, major: Number.parseInt(major, 10), minor: Number.parseInt(minor, 10)}
    },

    async canI(attrs) {
      const res = await call<{status?: {allowed?: boolean; reason?: string; denied?: boolean}}>(
        'create a SelfSubjectAccessReview', 'POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
        {body: {apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: {resourceAttributes: attrs}}},
      )
      return {allowed: res.body.status?.allowed === true, reason: res.body.status?.reason}
    },

    async apply(obj, o = {}) {
      const path = await pathOf(refOf(obj))
      const res = await call<LiveObject>(describeRef(obj), 'PATCH', path, {
        // JSON is YAML: the apply patch content type takes it as it is
        contentType: 'application/apply-patch+yaml',
        body: applyBody(obj),
        query: {fieldManager: o.fieldManager ?? FIELD_MANAGER, force: o.force ? true : undefined, dryRun: o.dryRun ? 'All' : undefined},
      })
      return res.body
    },

    async get(ref) {
      const res = await request<LiveObject>('GET', await pathOf(ref))
      if (res.status === 404) return undefined
      if (res.status !== 200) throw apiError(res, describeRef(ref), server)
      return res.body
    },

    async list(apiVersion, kind, o = {}) {
      const ref = {apiVersion, kind, name: '', namespace: o.namespace}
      if (!(await resourceFor(apiVersion, kind))) return []
      const path = await pathOf(ref, {collection: true})
      const items: LiveObject[] = []
      let cont: string | undefined
      do {
        const res = await call<{items?: LiveObject[]; metadata?: {continue?: string}}>(
          `list ${kind}${o.namespace ? ` in ${o.namespace}` : ''}`, 'GET', path,
          {query: {labelSelector: o.labelSelector, fieldSelector: o.fieldSelector, limit: 500, continue: cont, ...(o.cached ? {resourceVersion: '0'} : {})}},
        )
        // list items carry no apiVersion/kind; put them back so callers can name them
        for (const it of res.body.items ?? []) items.push({...it, apiVersion, kind})
        cont = res.body.metadata?.continue || undefined
      } while (cont)
      return items
    },

    watch(apiVersion, kind, o, onChange) {
      const stop = new AbortController()
      const run = async () => {
        const path = await pathOf({apiVersion, kind, name: '', namespace: o.namespace}, {collection: true})
        await request('GET', path, {
          query: {watch: 'true', labelSelector: o.labelSelector, timeoutSeconds: 300}, timeoutMs: 310_000, signal: stop.signal,
          onLine: (line) => {
            let e: {type?: string; object?: LiveObject}
            try {
              e = JSON.parse(line) as typeof e
            } catch {
              return
            }
            if ((e.type === 'ADDED' || e.type === 'MODIFIED') && e.object?.metadata) onChange(e.object)
          },
        })
      }
      run().catch(() => {})
      return () => stop.abort()
    },

    async create(obj) {
      const res = await call<LiveObject>(describeRef(obj), 'POST', await pathOf(refOf(obj), {collection: true}), {body: obj, query: {fieldManager: FIELD_MANAGER}})
      return res.body
    },

    async replace(obj) {
      const res = await call<LiveObject>(describeRef(obj), 'PUT', await pathOf(refOf(obj)), {body: obj, query: {fieldManager: FIELD_MANAGER}})
      return res.body
    },

    async delete(ref) {
      const res = await request('DELETE', await pathOf(ref), {query: {propagationPolicy: 'Background'}})
      if (res.status === 404) return false
      if (res.status !== 200 && res.status !== 202) throw apiError(res, describeRef(ref), server)
      return true
    },

    async patchStatus(ref, status) {
      const res = await call<LiveObject>(`${describeRef(ref)} status`, 'PATCH', await pathOf(ref, {subresource: 'status'}), {
        contentType: 'application/merge-patch+json',
        body: {status},
      })
      return res.body
    },

    async events(obj, limit = 5) {
      const uid = obj.metadata.uid
      if (!uid) return []
      const res = await request<{items?: Array<Record<string, any>>}>('GET', '/api/v1/events', {query: {fieldSelector: `involvedObject.uid=${uid}`}})
      // events are help for a message, never a reason to fail
      if (res.status !== 200) return []
      return (res.body.items ?? [])
        .map((e) => ({
          type: String(e.type ?? ''),
          reason: String(e.reason ?? ''),
          message: String(e.message ?? '').trim(),
          count: Number(e.count ?? e.series?.count ?? 1),
          time: String(e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp ?? ''),
          object: `${e.involvedObject?.kind ?? obj.kind} ${e.involvedObject?.namespace ? `${e.involvedObject.namespace}/` : ''}${e.involvedObject?.name ?? obj.metadata.name}`,
        }))
        .sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0))
        .slice(-limit)
    },
  }
  return kube
}

/**
 * The object as sent in an apply: empty `metadata.labels`/`metadata.annotations` maps are left out.
 * On a custom resource the API server stores no empty map, so an apply that carries one never
 * matches the stored object and is written every time (a new resourceVersion, a new managedFields
 * time): a re-apply of the same object would not be a no-op.
 */
export function applyBody(obj: LiveObject): LiveObject {
  const m = obj.metadata
  const empty = (x: unknown) => !!x && typeof x === 'object' && Object.keys(x).length === 0
  if (!empty(m.labels) && !empty(m.annotations)) return obj
  const {labels, annotations, ...rest} = m
  return {...obj, metadata: {...rest, ...(empty(labels) ? {} : {labels}), ...(empty(annotations) ? {} : {annotations})}}
}
