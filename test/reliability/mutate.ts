/**
 * fast-check arbitraries that turn a valid input file into bad ones: byte edits (flips, cuts,
 * insertions, truncation, non-UTF-8 bytes), structural edits through YAML (a field set to a wrong
 * type, removed, renamed, duplicated) and hand-made hostile files (alias bombs, deep nesting,
 * huge files, several documents).
 */
import fc from 'fast-check'
import {isMap, isScalar, isSeq, parseDocument, type Node} from 'yaml'

type Edit = (input: Buffer) => Buffer

const at = (b: Buffer, pos: number): number => (b.length === 0 ? 0 : pos % (b.length + 1))

/** Edits of the raw bytes. */
export const byteEdit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({pos: fc.nat(), byte: fc.integer({min: 0, max: 255})}).map(({pos, byte}) => (b: Buffer) => {
    const out = Buffer.from(b)
    if (out.length) out[pos % out.length] = byte
    return out
  }),
  fc.record({pos: fc.nat(), len: fc.integer({min: 1, max: 200})}).map(({pos, len}) => (b: Buffer) => {
    const p = at(b, pos)
    return Buffer.concat([b.subarray(0, p), b.subarray(p + len)])
  }),
  fc.record({pos: fc.nat(), bytes: fc.uint8Array({minLength: 1, maxLength: 16})}).map(({pos, bytes}) => (b: Buffer) => {
    const p = at(b, pos)
    return Buffer.concat([b.subarray(0, p), Buffer.from(bytes), b.subarray(p)])
  }),
  fc.nat().map((pos) => (b: Buffer) => b.subarray(0, at(b, pos))),
  // text that YAML treats specially, dropped anywhere
  fc.record({pos: fc.nat(), text: fc.constantFrom('\t', ': ', '- ', '&a ', '*a', '!!binary ', '---\n', '...\n', '{', '[', '"', "'", '#', '|', '>', '%YAML 1.1\n', '\u0000', '\r', '\ufeff', '? ', '<<: *a\n')}).map(({pos, text}) => (b: Buffer) => {
    const p = at(b, pos)
    return Buffer.concat([b.subarray(0, p), Buffer.from(text), b.subarray(p)])
  }),
  // a range copied elsewhere (duplicate keys, repeated blocks)
  fc.record({from: fc.nat(), len: fc.integer({min: 1, max: 400}), to: fc.nat()}).map(({from, len, to}) => (b: Buffer) => {
    const f = at(b, from)
    const chunk = b.subarray(f, f + len)
    const t = at(b, to)
    return Buffer.concat([b.subarray(0, t), chunk, b.subarray(t)])
  }),
  // invalid UTF-8: a lone continuation byte, an overlong form, a truncated sequence, a surrogate
  fc.record({pos: fc.nat(), seq: fc.constantFrom([0x80], [0xc0, 0xaf], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xff], [0xfe, 0xff])}).map(({pos, seq}) => (b: Buffer) => {
    const p = at(b, pos)
    return Buffer.concat([b.subarray(0, p), Buffer.from(seq), b.subarray(p)])
  }),
)

/** Values of the wrong type (or the right type with a hostile content) for any field. */
export const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({maxLength: 40}),
  fc.string({unit: 'grapheme', maxLength: 20}),
  fc.array(fc.string({maxLength: 8}), {maxLength: 4}),
  fc.dictionary(fc.string({maxLength: 8}), fc.string({maxLength: 8}), {maxKeys: 3}),
  fc.constant({}),
  fc.constant([]),
  fc.constant(''),
  fc.constant('x'.repeat(100_000)),
  fc.constant('a\u0000b'),
  fc.constant('../../etc/passwd'),
  fc.constant('registry.example/x@sha256:' + '0'.repeat(63)),
  fc.constant('registry.example/x:latest'),
  fc.constant('1.2'),
  fc.constant('-1'),
  fc.constant(Number.MAX_SAFE_INTEGER),
)

/** Every path to a node in a YAML document (maps by key, sequences by index). */
function paths(node: Node | null | undefined, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  if (isMap(node)) {
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : undefined
      if (k === undefined) continue
      out.push([...prefix, k])
      paths(pair.value as Node, [...prefix, k], out)
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      out.push([...prefix, i])
      paths(item as Node, [...prefix, i], out)
    })
  }
  return out
}

/** Structural edits: parse, change one field, write back. */
export const structuralEdit: fc.Arbitrary<Edit> = fc.record({
  pick: fc.nat(),
  op: fc.constantFrom('set', 'delete', 'rename', 'add'),
  value: wrongValue,
  key: fc.oneof(fc.string({maxLength: 12}), fc.constantFrom('apiVersion', 'kind', 'name', 'image', '__proto__', 'constructor', 'origins')),
}).map(({pick, op, value, key}) => (b: Buffer) => {
  const doc = parseDocument(b.toString('utf8'))
  // an earlier edit broke the syntax: leave it broken
  if (doc.errors.length) return b
  const all = paths(doc.contents as Node)
  if (all.length === 0) return b
  const path = all[pick % all.length]!
  const parent = path.slice(0, -1)
  const last = path[path.length - 1]!
  try {
    if (op === 'set') doc.setIn(path, doc.createNode(value))
    else if (op === 'delete') doc.deleteIn(path)
    else if (op === 'rename' && typeof last === 'string') {
      const v = doc.getIn(path, true)
      doc.deleteIn(path)
      doc.setIn([...parent, key], v)
    } else {
      const holder = doc.getIn(parent.length ? parent : [], true)
      if (isMap(holder) || parent.length === 0) doc.setIn([...parent, key], doc.createNode(value))
      else doc.setIn(path, doc.createNode(value))
    }
  } catch {
    return b
  }
  try {
    return Buffer.from(doc.toString({lineWidth: 0}))
  } catch {
    return b
  }
})

/** Hand-made hostile files. */
export const hostile: fc.Arbitrary<Buffer> = fc.oneof(
  // billion laughs
  fc.integer({min: 5, max: 12}).map((levels) => {
    let s = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for (let i = 1; i <= levels; i++) s += `l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(',')}]\n`
    return Buffer.from(s)
  }),
  // the bomb inside a field a loader reads
  fc.constantFrom('metadata', 'registry', 'kpack', 'teams').map((field) => Buffer.from(
    `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n${field}: {description: *d, name: *d}\n`)),
  fc.integer({min: 1000, max: 20_000}).map((n) => Buffer.from('['.repeat(n) + ']'.repeat(n))),
  fc.integer({min: 1000, max: 20_000}).map((n) => Buffer.from('a:\n' + Array.from({length: 200}, (_, i) => ' '.repeat(i + 1) + `k${i}:`).join('\n').repeat(Math.ceil(n / 20_000)))),
  fc.constant(Buffer.alloc(17 * 1024 * 1024, 0x61)),
  fc.constant(Buffer.from('apiVersion: kpi/v1alpha1\nkind: Bundle\n---\napiVersion: kpi/v1alpha1\nkind: Bundle\n')),
  fc.constant(Buffer.from('apiVersion: kpi/v1alpha1\napiVersion: kpi/v1alpha1\n')),
  fc.constant(Buffer.from([0xff, 0xfe, 0x61, 0x00, 0x3a, 0x00])),
  fc.constant(Buffer.from('!!js/function "function(){}"\n')),
  fc.constant(Buffer.from('<<: {a: 1}\n__proto__: {polluted: true}\n')),
  fc.uint8Array({maxLength: 4096}).map((u) => Buffer.from(u)),
  fc.string({maxLength: 2000}).map((s) => Buffer.from(s)),
)

/** A bad version of `valid`: one to three edits, or a hostile file. */
export function badInput(valid: Buffer): fc.Arbitrary<Buffer> {
  const edits = fc.array(fc.oneof({weight: 3, arbitrary: byteEdit}, {weight: 3, arbitrary: structuralEdit}), {minLength: 1, maxLength: 3})
  return fc.oneof(
    {weight: 9, arbitrary: edits.map((es) => es.reduce((b, e) => e(b), valid))},
    {weight: 1, arbitrary: hostile},
  )
}
