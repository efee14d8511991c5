/**
 * Air-gap and credential guards over rendered objects. Every string of every object is visited:
 * image references must be digests under the customer's registry prefix (a reference anywhere
 * else would make the cluster reach out of the air gap), and credentials must only be in Secrets.
 */
import {KpiError} from '../errors.js'
import {itemSegments} from '../kube/paths.js'
import {normaliseRegistry, parseDockerConfig, parseReference} from '../oci/index.js'
import {registryPrefix} from './platform.js'
import type {RegistryCredentials, RegistryValues} from '../values/types.js'
import type {KubeObject, RenderedObject} from './types.js'

export interface FoundImage {
  ref: string
  /** `Kind namespace/name` */
  object: string
  /** field path within the object, e.g. `spec.template.spec.containers[name=controller].image` */
  path: string
}

type Visit = (value: string, path: string, key: string | number, parent: unknown) => void

function walk(v: unknown, path: string, key: string | number, parent: unknown, visit: Visit): void {
  if (typeof v === 'string') visit(v, path, key, parent)
  else if (Array.isArray(v)) {
    const seg = itemSegments(v)
    v.forEach((x, i) => walk(x, `${path}${seg[i]}`, i, v, visit))
  }
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k, k, v, visit)
  }
}

/** Visits every string of an object with its field path. */
export function walkStrings(o: KubeObject, visit: (value: string, path: string) => void): void {
  walk(o, '', '', undefined, (s, p) => visit(s, p))
}

export const describe = (o: KubeObject): string => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`

const unwrap = (o: RenderedObject | KubeObject): KubeObject => ('object' in o && 'stage' in o ? (o as RenderedObject).object : (o as KubeObject))

/**
 * Whether `s` holds a name followed by `@sha256:` or `@sha512:` (what `/[a-z0-9][^\s@]*@sha(256|512):/i`
 * matches), in one pass. That regex, tried at every start, backtracked quadratically over a long
 * string holding no `@`: a 100 kB node selector value in a fuzzed values file held render for 18 s.
 */
export function holdsDigestRef(s: string): boolean {
  for (let at = s.indexOf('@'); at >= 0; at = s.indexOf('@', at + 1)) {
    const algo = s.slice(at + 1, at + 8).toLowerCase()
    if (algo !== 'sha256:' && algo !== 'sha512:') continue
    // the name before it: back to a space or the '@' before, so no character is scanned twice
    for (let i = at - 1; i >= 0 && !/[\s@]/.test(s[i]!); i--) if (/[a-z0-9]/i.test(s[i]!)) return true
  }
  return false
}

/**
 * Every string that is, or looks like, an image reference: values of `image` fields at any depth
 * (containers, ClusterStack/ClusterStore/ClusterLifecycle specs, ConfigMap data), `value`s of env
 * vars named *_IMAGE, and any other string holding a digest reference (`…@sha256:`).
 */
export function imageReferences(objects: Array<RenderedObject | KubeObject>): FoundImage[] {
  const out: FoundImage[] = []
  for (const o of objects.map(unwrap)) {
    // Secret data is base64 and holds no references; CRD schemas hold descriptions, not images
    if (o.kind === 'Secret') continue
    walk(o, '', '', undefined, (s, path, key, parent) => {
      const p = parent as Record<string, unknown> | undefined
      const isImageField = key === 'image' || (typeof key === 'string' && /(^|\.)image$/.test(key))
      const isImageEnv = key === 'value' && typeof p?.name === 'string' && /_IMAGE$/.test(p.name)
      const looksLikeDigestRef = holdsDigestRef(s)
      if (isImageField || isImageEnv || looksLikeDigestRef) out.push({ref: s, object: describe(o), path})
    })
  }
  return out
}

/** Why `ref` is not a digest reference under the registry prefix, or undefined when it is. */
export function airGapProblem(ref: string, registry: RegistryValues): string | undefined {
  let parsed
  try {
    parsed = parseReference(ref)
  } catch {
    return 'not a valid image reference'
  }
  if (!parsed.digest) return 'not pinned by digest'
  // docker's spellings of Docker Hub (index.docker.io, ...) are one registry
  const prefix = registryPrefix({...registry, server: normaliseRegistry(registry.server)}).toLowerCase()
  const full = `${parsed.registry}/${parsed.repository}`.toLowerCase()
  if (!full.startsWith(prefix + '/')) return `not under ${registryPrefix(registry)}`
  return undefined
}

/** Throws KpiError('input') listing every image reference that would leave the air gap. */
export function assertAirGapped(objects: Array<RenderedObject | KubeObject>, registry: RegistryValues): void {
  const bad = imageReferences(objects)
    .map((f) => ({...f, why: airGapProblem(f.ref, registry)}))
    .filter((f) => f.why)
  if (!bad.length) return
  const lines = bad.map((f) => `  ${f.ref} (${f.why}) at ${f.object}: ${f.path}`)
  throw new KpiError(
    'input',
    [`${bad.length} image reference${bad.length === 1 ? ' is' : 's are'} not a digest reference under ${registryPrefix(registry)}:`, ...lines].join('\n'),
    {
      hint: `render from the lock that kpi relocate --to-repo ${registryPrefix(registry)} --lock-output wrote, or set registry.server/registry.repository to where the lock points`,
      details: {references: bad},
    },
  )
}

/** The strings that must never appear outside Secret data: the password, and encodings of it. */
export function credentialNeedles(registry: RegistryCredentials): string[] {
  const needles = new Set<string>()
  const add = (s: string | undefined) => {
    if (s && s.length >= 4) {
      needles.add(s)
      needles.add(Buffer.from(s).toString('base64'))
    }
  }
  add(registry.password)
  if (registry.username && registry.password) add(`${registry.username}:${registry.password}`)
  add(registry.dockerConfigJson)
  if (registry.dockerConfigJson) {
    try {
      const auths = (parseDockerConfig(registry.dockerConfigJson).auths ?? {}) as Record<string, Record<string, unknown> | null>
      for (const entry of Object.values(auths)) {
        for (const k of ['auth', 'password', 'identitytoken', 'registrytoken']) add(typeof entry?.[k] === 'string' ? (entry[k] as string) : undefined)
        if (typeof entry?.auth === 'string') add(Buffer.from(entry.auth, 'base64').toString().split(':').slice(1).join(':'))
      }
    } catch {
      // checked when the values were read
    }
  }
  return [...needles]
}

/** Every string of the objects (what `renderedAnyway` of assertCredentialsOnlyInSecrets returns). */
export function stringsOf(objects: Array<RenderedObject | KubeObject>): Set<string> {
  const out = new Set<string>()
  for (const o of objects.map(unwrap)) walk(o, '', '', undefined, (s) => out.add(s))
  return out
}

/**
 * A last line of defence: throws KpiError('internal') if a credential shows up in any string
 * outside a Secret's data or stringData. Never names the credential.
 *
 * `renderedAnyway` gives the strings the same inputs render with another credential: one of them
 * holds a short password by coincidence, not by a leak (a password `admin` is part of ClusterRole
 * kpack-controller-admin, `secret` of kp-default-repository-secret, `linux` of every nodeSelector,
 * the registry's own name of every image).
 * Called only when a string holds a credential.
 */
export function assertCredentialsOnlyInSecrets(objects: Array<RenderedObject | KubeObject>, accounts: RegistryCredentials | RegistryCredentials[], renderedAnyway?: () => ReadonlySet<string>): void {
  const needles = [...new Set([accounts].flat().flatMap(credentialNeedles))]
  if (!needles.length) return
  let anyway: ReadonlySet<string> | undefined
  for (const o of objects.map(unwrap)) {
    walk(o, '', '', undefined, (s, path) => {
      if (o.kind === 'Secret' && /^(data|stringData)\./.test(path)) return
      if (!needles.some((n) => s.includes(n))) return
      anyway ??= renderedAnyway?.() ?? new Set()
      if (anyway.has(s)) return
      throw new KpiError('internal', `a registry credential would be written outside a Secret's data, at ${describe(o)}: ${path}`)
    })
  }
}
