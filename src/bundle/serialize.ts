/**
 * Deterministic YAML for a bundle: known fields in the order of the contract, any extra fields
 * after them sorted, no line folding. Same bundle, same bytes (locks are diffed and hashed).
 */
import {stringify} from 'yaml'
import type {Bundle} from './types.js'

type Obj = Record<string, unknown>

function ordered(obj: Obj | undefined, keys: readonly string[]): Obj | undefined {
  if (obj === undefined) return undefined
  const out: Obj = {}
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k]
  for (const k of Object.keys(obj).filter((k) => !keys.includes(k)).sort()) {
    if (obj[k] !== undefined) out[k] = sortDeep(obj[k])
  }
  return out
}

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep)
  if (v && typeof v === 'object') return ordered(v as Obj, [])
  return v
}

export function serializeBundle(b: Bundle): string {
  const doc = ordered({
    ...(b as unknown as Obj),
    metadata: ordered(b.metadata as unknown as Obj, ['name', 'version']),
    kpack: ordered({...(b.kpack as unknown as Obj), images: ordered(b.kpack.images as unknown as Obj, ['controller', 'webhook', 'buildInit', 'buildWaiter', 'rebase', 'completion'])}, ['version', 'images']),
    certInjection: b.certInjection === undefined ? undefined : ordered(b.certInjection as unknown as Obj, ['webhook', 'setupCaCerts']),
    lifecycle: ordered(b.lifecycle as unknown as Obj, ['image']),
    stacks: b.stacks.map((s) => ordered(s as unknown as Obj, ['name', 'id', 'buildImage', 'runImage'])),
    stores: b.stores.map((s) => ordered({...(s as unknown as Obj), sources: s.sources.map((src) => ordered(src as unknown as Obj, ['image']))}, ['name', 'sources'])),
    builders: b.builders.map((x) => ordered({
      ...(x as unknown as Obj),
      order: x.order.map((o) => ordered({...(o as unknown as Obj), group: o.group.map((g) => ordered(g as unknown as Obj, ['id', 'version', 'optional']))}, ['group'])),
    }, ['name', 'namespace', 'stack', 'store', 'order'])),
    origins: b.origins === undefined ? undefined : ordered(b.origins, []),
  }, ['apiVersion', 'kind', 'metadata', 'kpack', 'certInjection', 'lifecycle', 'stacks', 'stores', 'builders', 'origins'])
  return stringify(doc, {lineWidth: 0, indent: 2, indentSeq: true, aliasDuplicateObjects: false})
}
