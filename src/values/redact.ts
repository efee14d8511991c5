/**
 * Values without anything secret, for records anyone who can read Secrets in kpi-system may read
 * and `history` shows. What is secret is what the schema marks (`secret` in schema.ts), so a new
 * credential field is redacted by marking it, not by remembering to list it here too.
 */
import {SECRET_KEYWORD, valuesSchema} from './schema.js'
import type {Values} from './types.js'

type SchemaNode = {properties?: Record<string, SchemaNode>; items?: SchemaNode; [SECRET_KEYWORD]?: boolean | 'userinfo'}

interface SecretField {
  /** property names from the root, `[]` for every item of a list: ['teams', '[]', 'registry', 'password'] */
  path: string[]
  how: true | 'userinfo'
}

const EACH = '[]'

/** The fields the schema marks secret, in schema order, in lists too (a team's own registry account). */
function secretFields(node: SchemaNode, path: string[] = []): SecretField[] {
  const mark = node[SECRET_KEYWORD]
  if (mark === true || mark === 'userinfo') return [{path, how: mark}]
  return [
    ...Object.entries(node.properties ?? {}).flatMap(([k, child]) => secretFields(child, [...path, k])),
    ...(node.items ? secretFields(node.items, [...path, EACH]) : []),
  ]
}

/** Where `path` leads in `v`: each holder of its last key, with the field's name (`teams[0].registry.password`). */
function holders(v: unknown, path: string[], name = ''): Array<{obj: Record<string, unknown>; key: string; name: string}> {
  if (!v || typeof v !== 'object') return []
  const [head, ...rest] = path as [string, ...string[]]
  if (head === EACH) {
    if (!Array.isArray(v)) return []
    // the items themselves secret: each is a holder's key, as an object's field is
    if (!rest.length) return v.map((_, i) => ({obj: v as unknown as Record<string, unknown>, key: String(i), name: `${name}[${i}]`}))
    return v.flatMap((x, i) => holders(x, rest, `${name}[${i}]`))
  }
  if (Array.isArray(v)) return []
  const obj = v as Record<string, unknown>
  const here = name ? `${name}.${head}` : head
  return rest.length ? holders(obj[head], rest, here) : [{obj, key: head, name: here}]
}

let valuesFields: SecretField[] | undefined

/** `schema`: the values schema; another only to test the walk on shapes the values do not have yet. */
export function redactValues(values: Values, schema?: object): {values: Record<string, unknown>; redactedFields: string[]} {
  const fields = schema ? secretFields(schema as SchemaNode) : (valuesFields ??= secretFields(valuesSchema as unknown as SchemaNode))
  const v = structuredClone(values) as unknown as Record<string, unknown>
  const removed: string[] = []
  for (const f of fields) {
    for (const {obj, key, name} of holders(v, f.path)) {
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
  }
  return {values: v, redactedFields: removed}
}
