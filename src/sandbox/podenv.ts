/**
 * What a kubelet gives a container, computed from the pod as the API serves it: the environment
 * (values, ConfigMap/Secret key references, envFrom, the downward API, `$(VAR)` expansion) and the
 * volumes as plain directories (ConfigMap, Secret, projected: ServiceAccount token by TokenRequest,
 * kube-root-ca.crt, downward API; emptyDir), for the pod launcher to bind-mount at their paths.
 * The ServiceAccount admission plugin adds the projected `kube-api-access-*` volume at
 * /var/run/secrets/kubernetes.io/serviceaccount, so the token path comes from the pod itself.
 */
import type {CoreV1Api, V1Container, V1EnvVar, V1KeyToPath, V1ObjectFieldSelector, V1Pod, V1Volume} from '@kubernetes/client-node'
import {mkdir, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {KpiError} from '../errors.js'

export interface PodMount {
  source: string
  target: string
  readOnly?: boolean
}

type Data = Record<string, string>

/** Reads ConfigMaps and Secrets once per pod start; undefined when absent. */
function sources(core: CoreV1Api, namespace: string) {
  const cms = new Map<string, Promise<Data | undefined>>()
  const secrets = new Map<string, Promise<Data | undefined>>()
  const absent = (e: unknown) => {
    if ((e as {code?: number}).code === 404) return undefined
    throw e
  }
  return {
    configMap(name: string): Promise<Data | undefined> {
      if (!cms.has(name)) cms.set(name, core.readNamespacedConfigMap({name, namespace}).then((c) => ({...c.data}), absent))
      return cms.get(name)!
    },
    secret(name: string): Promise<Data | undefined> {
      if (!secrets.has(name)) {
        secrets.set(name, core.readNamespacedSecret({name, namespace}).then(
          (s) => Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])),
          absent,
        ))
      }
      return secrets.get(name)!
    },
  }
}

type Sources = ReturnType<typeof sources>

function fieldValue(pod: V1Pod, sel: V1ObjectFieldSelector): string {
  const m = pod.metadata ?? {}
  const p = sel.fieldPath
  const labelOrAnnotation = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(p)
  if (labelOrAnnotation) return (labelOrAnnotation[1] === 'labels' ? m.labels : m.annotations)?.[labelOrAnnotation[2]!] ?? ''
  const kv = (o: Record<string, string> | undefined) => Object.entries(o ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n')
  const fields: Record<string, string | undefined> = {
    'metadata.name': m.name,
    'metadata.namespace': m.namespace,
    'metadata.uid': m.uid,
    'metadata.labels': kv(m.labels),
    'metadata.annotations': kv(m.annotations),
    'spec.nodeName': pod.spec?.nodeName,
    'spec.serviceAccountName': pod.spec?.serviceAccountName,
    'status.podIP': pod.status?.podIP,
    'status.hostIP': pod.status?.hostIP,
  }
  if (!(p in fields)) throw new KpiError('usage', `fieldRef ${p} is not supported by the sandbox's pod runner`)
  return fields[p] ?? ''
}

/** `$(NAME)` as the kubelet expands it: defined names only, `$$` escapes. */
function expand(value: string, env: Data): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name?: string) => (name === undefined ? '$' : (env[name] ?? all)))
}

async function keyRef(src: Sources, kind: 'configMap' | 'secret', ref: {name?: string; key: string; optional?: boolean}, what: string): Promise<string | undefined> {
  const data = await src[kind](ref.name ?? '')
  const v = data?.[ref.key]
  if (v === undefined && !ref.optional) {
    throw new KpiError('not-found', `${what}: ${kind === 'configMap' ? 'ConfigMap' : 'Secret'} ${ref.name} key ${ref.key} not found`)
  }
  return v
}

export async function containerEnv(core: CoreV1Api, pod: V1Pod, c: V1Container): Promise<Data> {
  const src = sources(core, pod.metadata?.namespace ?? 'default')
  const env: Data = {}
  for (const from of c.envFrom ?? []) {
    const data = from.configMapRef ? await src.configMap(from.configMapRef.name ?? '') : from.secretRef ? await src.secret(from.secretRef.name ?? '') : undefined
    const optional = from.configMapRef?.optional ?? from.secretRef?.optional
    if (!data && !optional) throw new KpiError('not-found', `envFrom ${from.configMapRef?.name ?? from.secretRef?.name} not found`)
    for (const [k, v] of Object.entries(data ?? {})) env[(from.prefix ?? '') + k] = v
  }
  for (const e of c.env ?? []) {
    const v = await envValue(src, pod, e, env)
    if (v !== undefined) env[e.name] = v
  }
  return env
}

async function envValue(src: Sources, pod: V1Pod, e: V1EnvVar, env: Data): Promise<string | undefined> {
  if (e.value !== undefined) return expand(e.value, env)
  const f = e.valueFrom
  if (!f) return ''
  if (f.configMapKeyRef) return keyRef(src, 'configMap', f.configMapKeyRef, `env ${e.name}`)
  if (f.secretKeyRef) return keyRef(src, 'secret', f.secretKeyRef, `env ${e.name}`)
  if (f.fieldRef) return fieldValue(pod, f.fieldRef)
  // resourceFieldRef: limits mean nothing to a process on the host
  return undefined
}

async function writeItems(dir: string, data: Data | undefined, items: V1KeyToPath[] | undefined, what: string, optional?: boolean): Promise<void> {
  await mkdir(dir, {recursive: true})
  if (!data) {
    if (optional) return
    throw new KpiError('not-found', `${what} not found`)
  }
  const list = items?.length ? items.map((i) => ({key: i.key, path: i.path})) : Object.keys(data).map((k) => ({key: k, path: k}))
  for (const {key, path} of list) {
    if (data[key] === undefined) throw new KpiError('not-found', `${what}: key ${key} not found`)
    await writeFileIn(dir, path, data[key])
  }
}

async function writeFileIn(dir: string, path: string, content: string): Promise<void> {
  const file = join(dir, path)
  await mkdir(dirname(file), {recursive: true})
  await writeFile(file, content, {mode: 0o644})
}

/** Writes volume `v` under `dir`. */
async function materialize(core: CoreV1Api, src: Sources, pod: V1Pod, v: V1Volume, dir: string): Promise<void> {
  const ns = pod.metadata?.namespace ?? 'default'
  if (v.configMap) return writeItems(dir, await src.configMap(v.configMap.name ?? ''), v.configMap.items, `ConfigMap ${ns}/${v.configMap.name}`, v.configMap.optional)
  if (v.secret) return writeItems(dir, await src.secret(v.secret.secretName ?? ''), v.secret.items, `Secret ${ns}/${v.secret.secretName}`, v.secret.optional)
  if (v.emptyDir) {
    await mkdir(dir, {recursive: true})
    return
  }
  const downward = async (items: Array<{path: string; fieldRef?: V1ObjectFieldSelector}> | undefined) => {
    for (const i of items ?? []) if (i.fieldRef) await writeFileIn(dir, i.path, fieldValue(pod, i.fieldRef))
  }
  if (v.downwardAPI) {
    await mkdir(dir, {recursive: true})
    return downward(v.downwardAPI.items)
  }
  if (v.projected) {
    await mkdir(dir, {recursive: true})
    for (const s of v.projected.sources ?? []) {
      if (s.configMap) await writeItems(dir, await src.configMap(s.configMap.name ?? ''), s.configMap.items, `ConfigMap ${ns}/${s.configMap.name}`, s.configMap.optional)
      else if (s.secret) await writeItems(dir, await src.secret(s.secret.name ?? ''), s.secret.items, `Secret ${ns}/${s.secret.name}`, s.secret.optional)
      else if (s.downwardAPI) await downward(s.downwardAPI.items)
      else if (s.serviceAccountToken) {
        const t = s.serviceAccountToken
        // as the kubelet asks: bound to the pod, so deleting the pod revokes it
        const res = await core.createNamespacedServiceAccountToken({
          name: pod.spec?.serviceAccountName ?? 'default',
          namespace: ns,
          body: {
            spec: {
              audiences: t.audience ? [t.audience] : [],
              expirationSeconds: t.expirationSeconds ?? 3607,
              boundObjectRef: {apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name, uid: pod.metadata?.uid},
            },
          },
        })
        await writeFileIn(dir, t.path, res.status?.token ?? '')
      }
    }
    return
  }
  throw new KpiError('usage', `volume ${v.name}: only configMap, secret, projected, downwardAPI and emptyDir volumes run in the sandbox`)
}

/** Writes the container's volumes under `podDir/volumes/` and returns where each is mounted. */
export async function containerMounts(core: CoreV1Api, pod: V1Pod, c: V1Container, podDir: string): Promise<PodMount[]> {
  const src = sources(core, pod.metadata?.namespace ?? 'default')
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]))
  const out: PodMount[] = []
  const done = new Set<string>()
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.get(m.name)
    if (!v) throw new KpiError('usage', `volumeMount ${m.name}: no such volume in the pod`)
    const dir = join(podDir, 'volumes', m.name)
    if (!done.has(m.name)) {
      await materialize(core, src, pod, v, dir)
      done.add(m.name)
    }
    out.push({source: m.subPath ? join(dir, m.subPath) : dir, target: m.mountPath, readOnly: m.readOnly})
  }
  return out
}
