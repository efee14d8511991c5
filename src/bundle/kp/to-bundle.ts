/**
 * A kp descriptor as a kpi bundle, saying what a bundle cannot express instead of dropping it.
 * The objects are kp import's (kpack-cli pkg/import): the default stack and builder become extra
 * entries named `default` (kp's GetClusterStacks/GetClusterBuilders), builders name their stack
 * and store. What a descriptor does not have (kpack's own images, its version, the release name)
 * comes from a base bundle. Stack ids are read from the images later; they are left empty here.
 */
import type {Builder, Bundle, BuilderOrderEntry, Stack, Store} from '../types.js'
import {KP_DEFAULT_LIFECYCLE, type KpDescriptor} from './descriptor.js'

/** Something of the descriptor the bundle carries differently, or not at all. */
export interface ImportNote {
  /** where in the descriptor, e.g. `clusterBuildpacks[0]` */
  path: string
  message: string
}

export interface KpBase {
  metadata: Bundle['metadata']
  kpack: Bundle['kpack']
  /** the base's cert-injection-webhook images, when it ships them (a descriptor never names them) */
  certInjection?: Bundle['certInjection']
  lifecycle: Bundle['lifecycle']
  /** where the base came from, for notes (e.g. `--kpack-from build-service/`) */
  from: string
}

export interface KpBundle {
  bundle: Bundle
  notes: ImportNote[]
  /** the descriptor field each image of the bundle comes from: `stacks[1].runImage` -> `clusterStacks[0].runImage.image` */
  sources: Map<string, string>
}

export function kpToBundle(d: KpDescriptor, base: KpBase): KpBundle {
  const notes: ImportNote[] = []
  const sources = new Map<string, string>()
  const note = (path: string, message: string) => notes.push({path, message})
  for (const f of d.ignored) note(f, 'unknown field, ignored (kp ignores it too)')

  const bundle: Bundle = {
    apiVersion: 'kpi/v1alpha1',
    kind: 'Bundle',
    metadata: {...base.metadata},
    kpack: structuredClone(base.kpack),
    ...(base.certInjection ? {certInjection: structuredClone(base.certInjection)} : {}),
    lifecycle: {image: chooseLifecycle(d, base, note, (p) => sources.set('lifecycle.image', p))},
    stacks: [],
    stores: [],
    builders: [],
  }

  for (const b of d.clusterBuildpacks) {
    note(b.path, `ClusterBuildpack "${b.name}" (${b.image}) is not carried: a kpi bundle has no ClusterBuildpacks; add the image as a store source if builders need it`)
  }

  const stacks: Array<Stack & {from: string}> = d.clusterStacks.map((s) => ({name: s.name, id: '', buildImage: s.buildImage, runImage: s.runImage, from: s.path}))
  const defaultStack = stacks.find((s) => s.name === d.defaultClusterStack)
  if (defaultStack) withDefault(stacks, defaultStack, {...defaultStack, name: 'default'}, d.defaultStackField, 'stack', note)
  bundle.stacks = stacks.map(({from, ...s}, i) => {
    sources.set(`stacks[${i}].buildImage`, `${from}.buildImage.image`)
    sources.set(`stacks[${i}].runImage`, `${from}.runImage.image`)
    return s
  })

  const stores: Store[] = []
  for (const s of d.clusterStores) {
    if (s.sources.length === 0) {
      note(s.path, `store "${s.name}" has no sources and is left out: a kpi store needs at least one buildpackage`)
      continue
    }
    s.sources.forEach((_, j) => sources.set(`stores[${stores.length}].sources[${j}].image`, `${s.path}.sources[${j}].image`))
    stores.push({name: s.name, sources: s.sources.map((image) => ({image}))})
  }
  bundle.stores = stores

  const builders: Builder[] = []
  for (const b of d.clusterBuilders) {
    if (!b.clusterStore) {
      note(b.path, `builder "${b.name}" names no store and is left out: a kpi builder needs a store (its buildpacks come from it)`)
      continue
    }
    const order: BuilderOrderEntry[] = []
    for (const o of b.order) {
      const group: BuilderOrderEntry['group'] = []
      for (const g of o.group) {
        const other = g.image ? `image ${g.image}` : g.kind || g.name ? `${g.kind ?? 'ClusterBuildpack'} ${g.name ?? ''}`.trim() : undefined
        if (!g.id) {
          note(g.path, `order entry ${other ?? '(empty)'} is left out: a kpi builder names buildpacks by id`)
          continue
        }
        if (other) note(g.path, `order entry ${g.id}: its ${other} is not carried; kpack takes the buildpack ${g.id} from the builder's store`)
        group.push({id: g.id, ...(g.version ? {version: g.version} : {}), ...(g.optional !== undefined ? {optional: g.optional} : {})})
      }
      if (group.length) order.push({group})
    }
    builders.push({name: b.name, stack: b.clusterStack, store: b.clusterStore, order})
  }
  const defaultBuilder = builders.find((b) => b.name === d.defaultClusterBuilder)
  if (defaultBuilder) withDefault(builders, defaultBuilder, {...structuredClone(defaultBuilder), name: 'default'}, 'defaultClusterBuilder', 'builder', note)
  bundle.builders = builders
  return {bundle, notes, sources}
}

/**
 * kp adds the default (`from`) as one more object named `default` (`entry`, its copy); an entry
 * already named so is replaced by it, as kp's later write wins. That is only worth a note when
 * the entry replaced is another one than the default itself.
 */
function withDefault<T extends {name: string}>(list: T[], from: T, entry: T, field: string, what: string, note: (p: string, m: string) => void): void {
  const i = list.findIndex((x) => x.name === 'default')
  if (i === -1) {
    list.push(entry)
    return
  }
  if (list[i] !== from) note(field, `the ${what} named "default" is replaced by a copy of the default ${what}, as kp import does`)
  list[i] = entry
}

/**
 * A kpi bundle has one lifecycle, installed as kpack's `default-lifecycle`: the descriptor's
 * default (defaultClusterLifecycle, else the one kp names default-lifecycle, else the only one).
 */
function chooseLifecycle(d: KpDescriptor, base: KpBase, note: (p: string, m: string) => void, from: (path: string) => void): string {
  const all = d.clusterLifecycles
  if (all.length === 0) {
    note(d.apiVersion === 'kp.kpack.io/v1alpha1' ? 'apiVersion' : 'lifecycle', `the descriptor names no lifecycle (${d.apiVersion === 'kp.kpack.io/v1alpha1' ? 'kp.kpack.io/v1alpha1 has none' : 'none given'}): the lifecycle of ${base.from} is used`)
    return base.lifecycle.image
  }
  const chosen = all.find((l) => l.name === d.defaultClusterLifecycle)
    ?? all.find((l) => l.name === KP_DEFAULT_LIFECYCLE)
    ?? (all.length === 1 ? all[0]! : undefined)
    ?? all[0]!
  from(chosen.path === 'lifecycle' ? 'lifecycle.image' : `${chosen.path}.image`)
  if (chosen.name !== KP_DEFAULT_LIFECYCLE) {
    note(chosen.path, `lifecycle "${chosen.name}" becomes the bundle's lifecycle, installed as ClusterLifecycle ${KP_DEFAULT_LIFECYCLE}, not as "${chosen.name}"`)
  }
  for (const l of all) {
    if (l !== chosen) note(l.path, `ClusterLifecycle "${l.name}" (${l.image}) is not carried: a kpi bundle has one lifecycle`)
  }
  return chosen.image
}
