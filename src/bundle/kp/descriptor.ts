/**
 * kp's DependencyDescriptor (the file `kp import -f` reads), in every version kp reads, made into
 * one shape: kp's own v1 (kpack-cli pkg/import/descriptor). Like kp: v1alpha1 names `stacks`,
 * `stores`, `defaultStack` and builders' `stack`/`store`; v1alpha3 renames them `cluster*` and adds
 * one `lifecycle.image`, which becomes the ClusterLifecycle `default-lifecycle`; v1 has
 * `clusterLifecycles`, `defaultClusterLifecycle` and `clusterBuildpacks`. There is no v1alpha2.
 * Every entry keeps the path it had in the file, so messages point at what the user wrote.
 * Checks are kp's (names, duplicates, defaults that exist, references that parse, tags allowed).
 */
import {parse} from 'yaml'
import {KpiError, isKpiError} from '../../errors.js'
import {parseReference} from '../../oci/index.js'

export const KP_API_VERSIONS = ['kp.kpack.io/v1alpha1', 'kp.kpack.io/v1alpha3', 'kp.kpack.io/v1'] as const
export type KpApiVersion = typeof KP_API_VERSIONS[number]

/** kpack's default lifecycle name (v1alpha2.DefaultLifecycleName) */
export const KP_DEFAULT_LIFECYCLE = 'default-lifecycle'

/** A group entry of a builder's order: kpack's BuilderBuildpackRef (id, or an image, or a ClusterBuildpack by kind/name). */
export interface KpGroupEntry {
  id?: string
  version?: string
  optional?: boolean
  image?: string
  kind?: string
  name?: string
}

interface Placed {
  /** where the entry is in the file, e.g. `stacks[0]` */
  path: string
}

export interface KpDescriptor {
  file: string
  apiVersion: KpApiVersion
  defaultClusterLifecycle?: string
  defaultClusterStack?: string
  defaultClusterBuilder?: string
  /** the descriptor's own name of the default-stack field, for messages (`defaultStack` in v1alpha1) */
  defaultStackField: string
  clusterLifecycles: Array<Placed & {name: string; image: string}>
  clusterBuildpacks: Array<Placed & {name: string; image: string}>
  clusterStores: Array<Placed & {name: string; sources: string[]}>
  clusterStacks: Array<Placed & {name: string; buildImage: string; runImage: string}>
  clusterBuilders: Array<Placed & {name: string; clusterStack: string; clusterStore: string; order: Array<{group: Array<KpGroupEntry & Placed>}>}>
  /** fields kp ignores too (it reads YAML leniently): said, so nothing vanishes unseen */
  ignored: string[]
}

type Obj = Record<string, unknown>

const TOP: Record<KpApiVersion, string[]> = {
  'kp.kpack.io/v1alpha1': ['apiVersion', 'kind', 'defaultStack', 'defaultClusterBuilder', 'stores', 'stacks', 'clusterBuilders'],
  'kp.kpack.io/v1alpha3': ['apiVersion', 'kind', 'defaultClusterStack', 'defaultClusterBuilder', 'lifecycle', 'clusterStores', 'clusterStacks', 'clusterBuilders'],
  'kp.kpack.io/v1': ['apiVersion', 'kind', 'defaultClusterLifecycle', 'defaultClusterStack', 'defaultClusterBuilder', 'clusterLifecycles', 'clusterBuildpacks', 'clusterStores', 'clusterStacks', 'clusterBuilders'],
}

/** Reads a descriptor's text; throws KpiError('input') naming the file and field. */
export function parseKpDescriptor(text: string, file: string): KpDescriptor {
  const bad = (path: string, message: string, hint?: string): never => {
    throw new KpiError('input', `${file}: ${path ? `${path}: ` : ''}${message}`, hint ? {hint} : {})
  }
  let doc: unknown
  try {
    doc = parse(text, {prettyErrors: false, logLevel: 'error'})
  } catch (e) {
    return bad('', `not YAML (${(e as Error).message.split('\n')[0]})`, 'fix the YAML syntax')
  }
  if (!isObj(doc)) return bad('', 'not a kp DependencyDescriptor (expected a YAML mapping)', `start with "apiVersion: kp.kpack.io/v1" and "kind: DependencyDescriptor"`)
  const apiVersion = doc.apiVersion
  if (!(KP_API_VERSIONS as readonly unknown[]).includes(apiVersion)) {
    // the value as the user wrote it: a string quoted, anything else by its kind (never "[object Object]")
    const message = typeof apiVersion === 'string' ? `"${apiVersion}" is not a kp descriptor version`
      : apiVersion === undefined || apiVersion === null ? 'missing'
      : `a ${Array.isArray(apiVersion) ? 'list' : typeof apiVersion === 'object' ? 'mapping' : typeof apiVersion}, not a kp descriptor version`
    bad('apiVersion', message, `kp reads ${KP_API_VERSIONS.join(', ')}`)
  }
  const v = apiVersion as KpApiVersion
  const ignored: string[] = []
  const known = (o: Obj, path: string, fields: string[]) => {
    for (const k of Object.keys(o)) if (!fields.includes(k)) ignored.push(path ? `${path}.${k}` : k)
  }
  known(doc, '', TOP[v])

  const str = (o: Obj, path: string, key: string, required = true): string | undefined => {
    const x = o[key]
    if (x === undefined || x === null) return required ? bad(`${path}${path ? '.' : ''}${key}`, 'missing') : undefined
    if (typeof x !== 'string') return bad(`${path}${path ? '.' : ''}${key}`, `expected a string, got ${JSON.stringify(x)}`)
    return x
  }
  const list = (o: Obj, key: string, path = key): Array<{item: Obj; path: string}> => {
    const x = o[key]
    if (x === undefined || x === null) return []
    if (!Array.isArray(x)) return bad(path, 'expected a list')
    return x.map((item, i) => {
      if (!isObj(item)) bad(`${path}[${i}]`, 'expected a mapping')
      return {item: item as Obj, path: `${path}[${i}]`}
    })
  }
  const ref = (o: Obj, path: string, key: string): string => {
    const r = str(o, path, key)!
    try {
      parseReference(r)
    } catch (e) {
      bad(`${path}.${key}`, isKpiError(e) ? e.message : String(e), 'write registry/repository:tag or registry/repository@sha256:<digest>')
    }
    return r
  }
  const image = (o: Obj, path: string, key: string): string => {
    const x = o[key]
    if (!isObj(x)) return bad(`${path}.${key}`, 'expected a mapping with "image"', `write ${key}: {image: registry/repository:tag}`)
    known(x, `${path}.${key}`, ['image'])
    return ref(x, `${path}.${key}`, 'image')
  }

  const stacksKey = v === 'kp.kpack.io/v1alpha1' ? 'stacks' : 'clusterStacks'
  const storesKey = v === 'kp.kpack.io/v1alpha1' ? 'stores' : 'clusterStores'
  const defaultStackField = v === 'kp.kpack.io/v1alpha1' ? 'defaultStack' : 'defaultClusterStack'

  const d: KpDescriptor = {
    file, apiVersion: v, defaultStackField,
    defaultClusterStack: str(doc, '', defaultStackField, false) || undefined,
    defaultClusterBuilder: str(doc, '', 'defaultClusterBuilder', false) || undefined,
    defaultClusterLifecycle: v === 'kp.kpack.io/v1' ? str(doc, '', 'defaultClusterLifecycle', false) || undefined : undefined,
    clusterLifecycles: [], clusterBuildpacks: [], clusterStores: [], clusterStacks: [], clusterBuilders: [], ignored,
  }

  if (v === 'kp.kpack.io/v1alpha3' && doc.lifecycle !== undefined && doc.lifecycle !== null) {
    if (!isObj(doc.lifecycle)) bad('lifecycle', 'expected a mapping with "image"')
    const l = doc.lifecycle as Obj
    known(l, 'lifecycle', ['image'])
    if (l.image) d.clusterLifecycles.push({path: 'lifecycle', name: KP_DEFAULT_LIFECYCLE, image: ref(l, 'lifecycle', 'image')})
  }
  if (v === 'kp.kpack.io/v1') {
    for (const [key, into] of [['clusterLifecycles', d.clusterLifecycles], ['clusterBuildpacks', d.clusterBuildpacks]] as const) {
      for (const {item, path} of list(doc, key)) {
        known(item, path, ['name', 'image'])
        const name = str(item, path, 'name', false) ?? ''
        if (name === '') bad(`${path}.name`, `${key === 'clusterLifecycles' ? 'cluster lifecycle' : 'cluster buildpack'} name cannot be empty`)
        into.push({path, name, image: ref(item, path, 'image')})
      }
    }
  }
  for (const {item, path} of list(doc, storesKey)) {
    known(item, path, ['name', 'sources'])
    const sources = list(item, 'sources', `${path}.sources`).map((s) => {
      known(s.item, s.path, ['image'])
      return ref(s.item, s.path, 'image')
    })
    d.clusterStores.push({path, name: str(item, path, 'name', false) ?? '', sources})
  }
  for (const {item, path} of list(doc, stacksKey)) {
    known(item, path, ['name', 'buildImage', 'runImage'])
    d.clusterStacks.push({path, name: str(item, path, 'name', false) ?? '', buildImage: image(item, path, 'buildImage'), runImage: image(item, path, 'runImage')})
  }
  const [stackField, storeField] = v === 'kp.kpack.io/v1alpha1' ? ['stack', 'store'] : ['clusterStack', 'clusterStore']
  for (const {item, path} of list(doc, 'clusterBuilders')) {
    known(item, path, ['name', stackField, storeField, 'order'])
    const order = list(item, 'order', `${path}.order`).map((o) => {
      known(o.item, o.path, ['group'])
      return {
        group: list(o.item, 'group', `${o.path}.group`).map((g) => {
          known(g.item, g.path, ['id', 'version', 'optional', 'image', 'kind', 'name', 'namespace', 'apiVersion'])
          const e: KpGroupEntry & Placed = {path: g.path}
          for (const k of ['id', 'version', 'image', 'kind', 'name'] as const) {
            const s = str(g.item, g.path, k, false)
            if (s) e[k] = s
          }
          const optional = g.item.optional
          if (optional !== undefined && optional !== null) {
            // kp reads a bool and refuses anything else; dropping it would make an optional buildpack required
            if (typeof optional !== 'boolean') bad(`${g.path}.optional`, `expected true or false, got ${JSON.stringify(optional)}`, 'write optional: true (unquoted)')
            e.optional = optional as boolean
          }
          return e
        }),
      }
    })
    d.clusterBuilders.push({
      path, name: str(item, path, 'name', false) ?? '',
      clusterStack: str(item, path, stackField, false) ?? '', clusterStore: str(item, path, storeField, false) ?? '', order,
    })
  }

  // kp's ValidateDescriptor, in its order
  unique(d.clusterLifecycles, 'cluster lifecycle', bad)
  unique(d.clusterBuildpacks, 'cluster buildpack', bad)
  unique(d.clusterStores, 'store', bad)
  unique(d.clusterStacks, 'stack', bad)
  const missingDefault = (value: string | undefined, field: string, names: string[], what: string) => {
    if (value !== undefined && !names.includes(value)) bad(field, `default ${what} "${value}" not found`, `name one of: ${names.join(', ') || '(none)'}`)
  }
  missingDefault(d.defaultClusterLifecycle, 'defaultClusterLifecycle', d.clusterLifecycles.map((l) => l.name), 'cluster lifecycle')
  missingDefault(d.defaultClusterStack, defaultStackField, d.clusterStacks.map((s) => s.name), 'cluster stack')
  unique(d.clusterBuilders, 'cluster builder', bad)
  missingDefault(d.defaultClusterBuilder, 'defaultClusterBuilder', d.clusterBuilders.map((b) => b.name), 'cluster builder')
  return d
}

function unique(entries: Array<{name: string; path: string}>, what: string, bad: (path: string, message: string, hint?: string) => never): void {
  const seen = new Map<string, string>()
  for (const e of entries) {
    const first = seen.get(e.name)
    if (first !== undefined) bad(`${e.path}.name`, `duplicate ${what} name "${e.name}" (first at ${first})`, `give each ${what} a unique name`)
    seen.set(e.name, e.path)
  }
}

const isObj = (x: unknown): x is Obj => !!x && typeof x === 'object' && !Array.isArray(x)
