/**
 * Values without anything secret, for records anyone who can read Secrets in kpi-system may read
 * and `history` shows. What is secret is what the schema marks (`secret` in schema.ts), so a new
 * credential field is redacted by marking it, not by remembering to list it here too.
 */
import {SECRET_KEYWORD, valuesSchema} from './schema.js'
import type {Values} from './types.js'

type SchemaNode = {properties?: Record<string, SchemaNode>; items?: SchemaNode; [SECRET_KEYWORD]?: boolean | 'userinfo'}

interface SecretField {
  /** property names from the root, e.g. ['registry', 'password'] */
  path: string[]
  how: true | 'userinfo'
}

/** The fields the schema marks secret, in schema order. Lists (`items`) hold no secret today and are not walked. */
function secretFields(node: SchemaNode, path: string[] = []): SecretField[] {
  const mark = node[SECRET_KEYWORD]
  if (mark === true || mark === 'userinfo') return [{path, how: mark}]
  return Object.entries(node.properties ?? {}).flatMap(([k, child]) => secretFields(child, [...path, k]))
}

let fields: SecretField[] | undefined

export function redactValues(values: Values): {values: Record<string, unknown>; redactedFields: string[]} {
  fields ??= secretFields(valuesSchema as unknown as SchemaNode)
  const v = structuredClone(values) as unknown as Record<string, unknown>
  const removed: string[] = []
  for (const f of fields) {
    const parent = f.path.slice(0, -1).reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), v)
    if (!parent || typeof parent !== 'object') continue
    const obj = parent as Record<string, unknown>
    const key = f.path.at(-1)!
    const name = f.path.join('.')
    if (obj[key] === undefined) continue
    if (f.how === true) {
      delete obj[key]
      removed.push(name)
      continue
    }
    const u = obj[key]
    if (typeof u !== 'string' || !u) continue
    try {
      const url = new URL(u)
      if (url.username || url.password) {
        url.username = ''
        url.password = ''
        obj[key] = url.toString()
        removed.push(`${name} credentials`)
      }
    } catch {
      // not a URL: values validation would have refused it; drop it to be safe
      delete obj[key]
      removed.push(name)
    }
  }
  return {values: v, redactedFields: removed}
}
