/**
 * Validates a parsed bundle document against v1alpha1 while it is still a YAML tree, so every
 * problem carries the line and column of the offending node. Collects all problems.
 *
 * Unknown fields, decided per place:
 * - top level and `kpack.images`: an error. A section or image this kpi does not know would be
 *   silently left out of relocation and install, which is worse than refusing (the hint says to
 *   upgrade kpi if the field is meant).
 * - everywhere else (`metadata`, stack/store/builder entries, order groups): a warning, so other
 *   tools may add descriptive fields (the contract allows additions), except when the name is a
 *   near miss of a known field (`buildimage`, `runImge`): that is a typo and an error.
 */
import {isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node, type Scalar, type YAMLMap, type YAMLSeq} from 'yaml'
import semver from 'semver'
import {closest} from '../problems/suggest.js'
import {nodePosition} from '../problems/yaml.js'
import type {BundleProblem} from './problems.js'
import {checkPinnedReference} from './refs.js'

export const API_VERSION = 'kpi/v1alpha1'
export const KINDS = ['Bundle', 'BundleLock'] as const
export const TOP_FIELDS = ['apiVersion', 'kind', 'metadata', 'kpack', 'certInjection', 'lifecycle', 'stacks', 'stores', 'builders', 'origins'] as const
export const KPACK_IMAGE_FIELDS = ['controller', 'webhook', 'buildInit', 'buildWaiter', 'rebase', 'completion'] as const
export const CERT_INJECTION_FIELDS = ['webhook', 'setupCaCerts'] as const

// Kubernetes object names: stacks, stores and builders become ClusterStack/ClusterStore/ClusterBuilder objects.
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

interface Ctx {
  /** a bundle before `kpi bundle lock`: references may name a tag without a digest */
  allowTags: boolean
  file: string
  lc: LineCounter
  doc: Document
  problems: BundleProblem[]
  warnings: BundleProblem[]
}

type Entries = Map<string, {key: Scalar; value: Node | null}>

export interface ValidateOptions {
  /** accept references by tag alone (a bundle `kpi bundle lock` is about to pin) */
  allowTags?: boolean
}

export function validateDocument(doc: Document, lc: LineCounter, file: string, opts: ValidateOptions = {}): {problems: BundleProblem[]; warnings: BundleProblem[]} {
  const ctx: Ctx = {allowTags: opts.allowTags ?? false, file, lc, doc, problems: [], warnings: []}
  const root = resolve(ctx, doc.contents as Node | null)
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) {
    ctx.problems.push({file, message: 'the bundle file is empty', hint: `start with "apiVersion: ${API_VERSION}" and "kind: Bundle"`})
    return ctx
  }
  if (!isMap(root)) {
    problem(ctx, root, '', 'the bundle must be a YAML mapping', `start with "apiVersion: ${API_VERSION}" and "kind: Bundle"`)
    return ctx
  }
  const top = fields(ctx, root, '', TOP_FIELDS, 'error')

  const apiVersion = str(ctx, top, root, '', 'apiVersion')
  if (apiVersion !== undefined && apiVersion !== API_VERSION) {
    problem(ctx, top.get('apiVersion')?.value ?? root, 'apiVersion', `unsupported apiVersion "${apiVersion}"`, `this kpi reads ${API_VERSION}`)
  }
  const kind = str(ctx, top, root, '', 'kind')
  if (kind !== undefined && !(KINDS as readonly string[]).includes(kind)) {
    problem(ctx, top.get('kind')?.value ?? root, 'kind', `unsupported kind "${kind}"`, `use ${KINDS.join(' or ')}`)
    // another kind of document (a SampleSpec, a Kubernetes object): its fields are not a bundle's
    // to check, and a list of them missing or unknown would bury the one line that matters
    return {problems: ctx.problems.filter((p) => p.path === 'apiVersion' || p.path === 'kind'), warnings: []}
  }

  const metadata = map(ctx, top, root, '', 'metadata')
  if (metadata) {
    const m = fields(ctx, metadata, 'metadata', ['name', 'version'], 'warn')
    const name = str(ctx, m, metadata, 'metadata', 'name')
    if (name !== undefined && !dnsSubdomain.test(name)) {
      problem(ctx, m.get('name')?.value ?? metadata, 'metadata.name', `"${name}" is not a valid name`, 'use lowercase letters, digits and -')
    }
    version(ctx, m, metadata, 'metadata', 'version')
  }

  const kpack = map(ctx, top, root, '', 'kpack')
  if (kpack) {
    const k = fields(ctx, kpack, 'kpack', ['version', 'images'], 'warn')
    version(ctx, k, kpack, 'kpack', 'version')
    const images = map(ctx, k, kpack, 'kpack', 'images')
    if (images) {
      const im = fields(ctx, images, 'kpack.images', KPACK_IMAGE_FIELDS, 'error')
      for (const f of KPACK_IMAGE_FIELDS) image(ctx, im, images, 'kpack.images', f)
    }
  }

  // optional as a whole; when present, both images (the webhook injects the other)
  const certInjection = top.has('certInjection') ? map(ctx, top, root, '', 'certInjection') : undefined
  if (certInjection) {
    const c = fields(ctx, certInjection, 'certInjection', CERT_INJECTION_FIELDS, 'error')
    for (const f of CERT_INJECTION_FIELDS) image(ctx, c, certInjection, 'certInjection', f)
  }

  const lifecycle = map(ctx, top, root, '', 'lifecycle')
  if (lifecycle) {
    const l = fields(ctx, lifecycle, 'lifecycle', ['image'], 'warn')
    image(ctx, l, lifecycle, 'lifecycle', 'image')
  }

  const stackNames = named(ctx, top, root, 'stacks', 'stack', (entry, path) => {
    const s = fields(ctx, entry, path, ['name', 'id', 'buildImage', 'runImage'], 'warn')
    const id = str(ctx, s, entry, path, 'id')
    if (id === '') problem(ctx, s.get('id')?.value ?? entry, `${path}.id`, 'stack id is empty', 'e.g. io.buildpacks.stacks.jammy')
    image(ctx, s, entry, path, 'buildImage')
    image(ctx, s, entry, path, 'runImage')
    return s
  })

  const storeNames = named(ctx, top, root, 'stores', 'store', (entry, path) => {
    const s = fields(ctx, entry, path, ['name', 'sources'], 'warn')
    mappings(ctx, seq(ctx, s, entry, path, 'sources'), `${path}.sources`, {
      empty: ['a store needs at least one source', 'add - image: <buildpackage>@sha256:<digest>'],
      notMap: ['expected a mapping with "image"', 'write "- image: <reference>"'],
    }, (src, sp) => image(ctx, fields(ctx, src, sp, ['image'], 'warn'), src, sp, 'image'))
    return s
  })

  named(ctx, top, root, 'builders', 'builder', (entry, path) => {
    const b = fields(ctx, entry, path, ['name', 'stack', 'store', 'order', 'namespace'], 'warn')
    for (const [field, known, what] of [['stack', stackNames, 'stack'], ['store', storeNames, 'store']] as const) {
      const v = str(ctx, b, entry, path, field)
      if (v === undefined || known === undefined || known.has(v)) continue
      const list = [...known.keys()]
      const near = closest(v, list)
      problem(
        ctx, b.get(field)?.value ?? entry, `${path}.${field}`,
        `unknown ${what} "${v}"; known ${what}s: ${list.length ? list.join(', ') : '(none)'}`,
        near ? `did you mean "${near}"?` : `name one of the ${what}s defined under ${what}s:`,
      )
    }
    const ns = str(ctx, b, entry, path, 'namespace', {optional: true})
    // a namespace name is a DNS label: at most 63 characters (the apply would fail, long after lint said ok)
    if (ns !== undefined && (!dnsLabel.test(ns) || ns.length > 63)) problem(ctx, b.get('namespace')?.value ?? entry, `${path}.namespace`, `"${ns}" is not a valid namespace name`, 'use lowercase letters, digits and -, at most 63')
    mappings(ctx, seq(ctx, b, entry, path, 'order'), `${path}.order`, {
      empty: ['builder order is empty', 'add - group: [{id: <buildpack id>}]'],
      notMap: ['expected a mapping with "group"', 'write "- group: [{id: <buildpack id>}]"'],
    }, (o, op) => {
      const of = fields(ctx, o, op, ['group'], 'warn')
      mappings(ctx, seq(ctx, of, o, op, 'group'), `${op}.group`, {
        empty: ['order group is empty', 'add {id: <buildpack id>}'],
        notMap: ['expected a mapping with "id"', 'write {id: <buildpack id>}'],
      }, (gm, gp) => {
        const gf = fields(ctx, gm, gp, ['id', 'version', 'optional'], 'warn')
        const id = str(ctx, gf, gm, gp, 'id')
        if (id === '') problem(ctx, gf.get('id')?.value ?? gm, `${gp}.id`, 'buildpack id is empty', 'e.g. paketo-buildpacks/java')
        str(ctx, gf, gm, gp, 'version', {optional: true})
        bool(ctx, gf, gp, 'optional')
      })
    })
    return b
  })

  const origins = top.get('origins')
  if (origins) {
    const o = resolve(ctx, origins.value)
    if (!isMap(o)) problem(ctx, o ?? origins.key, 'origins', 'expected a mapping of destination reference to source reference', 'written by kpi relocate --lock-output; regenerate it')
    else {
      for (const pair of o.items) {
        const k = pair.key as Node
        const v = resolve(ctx, pair.value as Node | null)
        const keyText = isScalar(k) ? String(k.value) : '?'
        if (!isScalar(k) || typeof k.value !== 'string' || !isScalar(v) || typeof v.value !== 'string') {
          problem(ctx, v ?? k, `origins["${keyText}"]`, 'origins maps a reference (string) to a reference (string)', 'regenerate the lock with kpi relocate --lock-output')
        }
      }
    }
  }

  return ctx
}

// ---- helpers over the YAML tree ----

function resolve(ctx: Ctx, node: Node | null | undefined): Node | null {
  if (node && isAlias(node)) return (node.resolve(ctx.doc) as Node | undefined) ?? null
  return node ?? null
}

const position = (ctx: Ctx, node: Node | null | undefined): {line?: number; col?: number} => nodePosition(ctx.lc, node)

function push(ctx: Ctx, list: BundleProblem[], node: Node | null | undefined, path: string, message: string, hint?: string): void {
  list.push({file: ctx.file, ...position(ctx, node), ...(path ? {path} : {}), message, ...(hint ? {hint} : {})})
}

function problem(ctx: Ctx, node: Node | null | undefined, path: string, message: string, hint?: string): void {
  push(ctx, ctx.problems, node, path, message, hint)
}

const join = (path: string, key: string): string => (path ? `${path}.${key}` : key)

/** Reads a mapping's keys, reporting non-string keys and unknown fields by the policy above. */
function fields(ctx: Ctx, node: YAMLMap, path: string, known: readonly string[], unknown: 'error' | 'warn'): Entries {
  const out: Entries = new Map()
  for (const pair of node.items) {
    const key = pair.key as Node
    if (!isScalar(key) || typeof key.value !== 'string') {
      problem(ctx, key, path, 'field names must be strings', undefined)
      continue
    }
    out.set(key.value, {key, value: (pair.value as Node | null) ?? null})
    if (known.includes(key.value)) continue
    const near = closest(key.value, known)
    const where = join(path, key.value)
    if (near) problem(ctx, key, where, `unknown field "${key.value}"`, `did you mean "${near}"?`)
    else if (unknown === 'error') {
      problem(ctx, key, where, `unknown field "${key.value}"`, `known fields here: ${known.join(', ')} (a newer kpi may know it: upgrade kpi)`)
    } else push(ctx, ctx.warnings, key, where, `unknown field "${key.value}" is ignored`)
  }
  return out
}

function missing(ctx: Ctx, parent: Node, path: string, key: string): void {
  problem(ctx, parent, join(path, key), 'missing required field', `add "${key}:" to ${path || 'the top level'}`)
}

function get(ctx: Ctx, e: Entries, parent: Node, path: string, key: string, optional: boolean): Node | null | undefined {
  const entry = e.get(key)
  const v = resolve(ctx, entry?.value)
  if (!entry || v === null || (isScalar(v) && v.value === null)) {
    if (!optional) {
      if (entry) problem(ctx, entry.key, join(path, key), 'field has no value')
      else missing(ctx, parent, path, key)
    }
    return undefined
  }
  return v
}

function str(ctx: Ctx, e: Entries, parent: Node, path: string, key: string, opts: {optional?: boolean} = {}): string | undefined {
  const v = get(ctx, e, parent, path, key, opts.optional ?? false)
  if (v === undefined) return undefined
  if (!isScalar(v) || typeof v.value !== 'string') {
    const shown = isScalar(v) ? String(v.value) : isMap(v) ? 'a mapping' : 'a list'
    problem(ctx, v, join(path, key), `expected a string, got ${shown}`, isScalar(v) ? `quote it: ${key}: "${shown}"` : undefined)
    return undefined
  }
  return v.value
}

function bool(ctx: Ctx, e: Entries, path: string, key: string): void {
  const entry = e.get(key)
  const v = resolve(ctx, entry?.value)
  if (!entry || v === null) return
  if (!isScalar(v) || typeof v.value !== 'boolean') problem(ctx, v, join(path, key), 'expected true or false')
}

function map(ctx: Ctx, e: Entries, parent: Node, path: string, key: string): YAMLMap | undefined {
  const v = get(ctx, e, parent, path, key, false)
  if (v === undefined) return undefined
  if (!isMap(v)) {
    problem(ctx, v, join(path, key), 'expected a mapping')
    return undefined
  }
  return v
}

/**
 * Each item of a list that must not be empty and must hold mappings: `[message, hint]` for an
 * empty list and for an item that is not a mapping; `each` gets the mapping and its path.
 */
function mappings(
  ctx: Ctx, list: YAMLSeq | undefined, path: string,
  say: {empty: [string, string]; notMap: [string, string]}, each: (m: YAMLMap, path: string) => void,
): void {
  if (!list) return
  if (list.items.length === 0) problem(ctx, list, path, ...say.empty)
  list.items.forEach((item, i) => {
    const p = `${path}[${i}]`
    const m = resolve(ctx, item as Node)
    if (!isMap(m)) return void problem(ctx, m ?? list, p, ...say.notMap)
    each(m, p)
  })
}

function seq(ctx: Ctx, e: Entries, parent: Node, path: string, key: string): YAMLSeq | undefined {
  const v = get(ctx, e, parent, path, key, false)
  if (v === undefined) return undefined
  if (!isSeq(v)) {
    problem(ctx, v, join(path, key), 'expected a list', key === 'stacks' || key === 'stores' || key === 'builders' ? 'use [] for none' : undefined)
    return undefined
  }
  return v
}

function version(ctx: Ctx, e: Entries, parent: Node, path: string, key: string): void {
  // `version: 1.4` parses as a number; say what is wrong with it as a version, not as a type.
  const node = resolve(ctx, e.get(key)?.value)
  const v = isScalar(node) && typeof node.value === 'number' ? (node.source ?? String(node.value)) : str(ctx, e, parent, path, key)
  if (v === undefined) return
  if (semver.valid(v) === v) return
  const suggestion = semver.valid(semver.clean(v) ?? '') ?? semver.coerce(v)?.version
  problem(
    ctx, node, join(path, key), `"${v}" is not a semantic version (MAJOR.MINOR.PATCH)`,
    suggestion ? `write ${suggestion}` : 'e.g. 1.0.0',
  )
}

function image(ctx: Ctx, e: Entries, parent: Node, path: string, key: string, opts: {optional?: boolean} = {}): void {
  const ref = str(ctx, e, parent, path, key, opts)
  if (ref === undefined) return
  const check = checkPinnedReference(ref, {allowTags: ctx.allowTags})
  if (!check.ok) problem(ctx, e.get(key)?.value, join(path, key), check.message, check.hint)
}

/**
 * A list of named entries (stacks, stores, builders): checks each, the names' syntax and
 * uniqueness. Returns name -> node, or undefined when the list itself is unusable.
 */
function named(
  ctx: Ctx, top: Entries, root: YAMLMap, key: string, what: string,
  each: (entry: YAMLMap, path: string) => Entries,
): Map<string, Node> | undefined {
  const list = seq(ctx, top, root, '', key)
  if (!list) return undefined
  const names = new Map<string, Node>()
  list.items.forEach((item, i) => {
    const path = `${key}[${i}]`
    const entry = resolve(ctx, item as Node)
    if (!isMap(entry)) return void problem(ctx, entry ?? list, path, `expected a ${what} mapping`)
    const f = each(entry, path)
    const name = str(ctx, f, entry, path, 'name')
    if (name === undefined) return
    const node = f.get('name')?.value ?? entry
    if (!dnsSubdomain.test(name) || name.length > 253) {
      problem(ctx, node, `${path}.name`, `"${name}" is not a valid ${what} name`, 'use lowercase letters, digits, - and . (a Kubernetes object name)')
    }
    const first = names.get(name)
    if (first) {
      const p = position(ctx, first)
      problem(ctx, node, `${path}.name`, `duplicate ${what} name "${name}" (first at line ${p.line ?? '?'})`, `give each ${what} a unique name`)
    } else names.set(name, node)
  })
  return names
}
