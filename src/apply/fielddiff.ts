/**
 * Field-level differences between two versions of one object, as `kpi diff` and the change set
 * show them: `spec.template.spec.containers[name=controller].image: a -> b`. Bookkeeping the server
 * owns (resourceVersion, managedFields, uid, generation, timestamps) and status are left out; Secret
 * data is compared but never shown.
 *
 * A list whose items all have distinct names (containers, env, volumes, ports, volumeMounts...) is
 * compared item by name, as Kubernetes merges it: one variable added to an env list is one change,
 * not a change at every index after it, and the path says which variable.
 */
import {itemNames, nameSegment} from '../kube/paths.js'
import type {LiveObject} from '../kube/types.js'

export const MASKED = '<secret data>'

export interface FieldChange {
  path: string
  /** absent: the field is added */
  before?: unknown
  /** absent: the field is removed */
  after?: unknown
}

const SERVER_META = ['resourceVersion', 'managedFields', 'uid', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink']

/** What of an object a change is about: no status, no server-owned metadata. */
export function comparable(o: LiveObject): Record<string, unknown> {
  const {status: _status, metadata, apiVersion, kind, ...rest} = o
  const meta: Record<string, unknown> = {...metadata}
  for (const k of SERVER_META) delete meta[k]
  return {apiVersion, kind, metadata: meta, ...rest}
}

const isObj = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x)
const key = (k: string) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? k : JSON.stringify(k))
const join = (path: string, k: string) => (path ? `${path}.${key(k)}` : key(k))

function walk(a: unknown, b: unknown, path: string, out: FieldChange[]): void {
  if (isObj(a) && isObj(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!(k in b)) out.push({path: join(path, k), before: a[k]})
      else if (!(k in a)) out.push({path: join(path, k), after: b[k]})
      else walk(a[k], b[k], join(path, k), out)
    }
    return
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const na = itemNames(a)
    const nb = itemNames(b)
    if (na && nb) return walkNamed(a, na, b, nb, path, out)
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i >= b.length) out.push({path: `${path}[${i}]`, before: a[i]})
      else if (i >= a.length) out.push({path: `${path}[${i}]`, after: b[i]})
      else walk(a[i], b[i], `${path}[${i}]`, out)
    }
    return
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({path, before: a, after: b})
}

function walkNamed(a: unknown[], na: string[], b: unknown[], nb: string[], path: string, out: FieldChange[]): void {
  const at = (n: string) => `${path}${nameSegment(n)}`
  nb.forEach((n, j) => {
    const i = na.indexOf(n)
    if (i < 0) out.push({path: at(n), after: b[j]})
    else walk(a[i], b[j], at(n), out)
  })
  na.forEach((n, i) => {
    if (!nb.includes(n)) out.push({path: at(n), before: a[i]})
  })
  // the same items in another order is a change too (it is what gets applied), said once, as the
  // stretch of names from the first to the last that moved (the whole list would be clipped)
  const kept = (from: string[], other: string[]) => from.filter((n) => other.includes(n))
  const ka = kept(na, nb)
  const kb = kept(nb, na)
  const first = ka.findIndex((n, i) => n !== kb[i])
  if (first < 0) return
  const last = ka.findLastIndex((n, i) => n !== kb[i])
  out.push({path: `${path} order`, before: ka.slice(first, last + 1), after: kb.slice(first, last + 1)})
}

const isSecret = (o: LiveObject) => o.kind === 'Secret' && o.apiVersion === 'v1'
const secretPath = (p: string) => /^(data|stringData)(\.|$)/.test(p)

/** The fields that differ from `before` to `after`; a Secret's data values are masked. */
export function diffFields(before: LiveObject, after: LiveObject): FieldChange[] {
  const out: FieldChange[] = []
  walk(comparable(before), comparable(after), '', out)
  if (!isSecret(after)) return out
  return out.map((c) => (secretPath(c.path)
    ? {path: c.path, ...('before' in c ? {before: MASKED} : {}), ...('after' in c ? {after: MASKED} : {})}
    : c))
}

/** `spec.replicas: 1 -> 2`, `data.token: changed`, `metadata.labels.x: added "y"` */
export function formatFieldChange(c: FieldChange): string {
  const show = (v: unknown) => {
    const s = typeof v === 'string' ? v : JSON.stringify(v)
    return s.length > 120 ? `${s.slice(0, 117)}...` : s
  }
  if (!('before' in c)) return `${c.path}: added ${show(c.after)}`
  if (!('after' in c)) return `${c.path}: removed (was ${show(c.before)})`
  if (c.before === MASKED) return `${c.path}: changed`
  return `${c.path}: ${show(c.before)} -> ${show(c.after)}`
}
