/**
 * The shape of the source: no module imports itself back through others. An ES module cycle
 * evaluates one of its modules before the other's top level has run, so a constant read at load
 * (a Set built from another module's names) throws, depending on which module was imported first:
 * render's proxy check once importing values/checks.ts, which imports render's names, made
 * `import('dist/render/render.js')` throw "Cannot access ... before initialization" while the CLI,
 * entered elsewhere, worked. Imports of types only are erased and do not count.
 */
import {readdir, readFile} from 'node:fs/promises'
import {dirname, join, normalize, relative} from 'node:path'
import {describe, expect, it} from 'vitest'

const SRC = join(import.meta.dirname, '..', 'src')

async function sources(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true})) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await sources(p)))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

/** Every module of src/ and its text, read once for all the checks below. */
let texts: Promise<Map<string, string>> | undefined
const sourceTexts = () => (texts ??= sources(SRC).then(async (files) => new Map(await Promise.all(files.map(async (f) => [f, await readFile(f, 'utf8')] as const)))))

/** Each module of src/ with the files it imports, as `pick` finds them in its text (`./x.js` resolved to `x.ts`). */
async function importGraph(pick: (text: string) => string[]): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>()
  for (const [file, text] of await sourceTexts()) graph.set(file, pick(text).map((d) => normalize(join(dirname(file), d)).replace(/\.js$/, '.ts')))
  return graph
}

/** The relative modules `text` imports or re-exports for their values (not `import type`, not `{type A}` alone). */
function valueImports(text: string): string[] {
  const out: string[] = []
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)([^;]*?)\bfrom\s+'(\.[^']+)'/gm)) {
    const clause = m[1]!.trim()
    const names = /^\{([^}]*)\}$/.exec(clause)?.[1]
    if (names !== undefined && names.split(',').map((n) => n.trim()).filter(Boolean).every((n) => n.startsWith('type '))) continue
    out.push(m[2]!)
  }
  for (const m of text.matchAll(/^import\s+'(\.[^']+)'/gm)) out.push(m[1]!)
  return out
}

/** Every cycle's modules (strongly connected components of more than one, or one importing itself). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const on = new Set<string>()
  const found: string[][] = []
  const visit = (v: string) => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    on.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (on.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!))
      }
    }
    if (low.get(v) !== index.get(v)) return
    const part: string[] = []
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      on.delete(w)
      part.push(w)
      if (w === v) break
    }
    if (part.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(part.sort())
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return found
}

/** Every relative module `text` imports or re-exports, types included (a layer is broken by a type as much as by a value). */
const allImports = (text: string): string[] => [...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'(\.[^']+)'/gm)].map((m) => m[1]!)

/**
 * The data flow of CONTRIBUTING.md: what each folder may import besides src/'s top-level leaves,
 * `problems/` and `progress/`. The two clients import only leaves; each stage imports the clients
 * and the stages before it. `revision/` is the storage under `apply/` (Helm's storage driver under
 * pkg/action). cli, commands, sandbox and imagegen assemble everything and are left out.
 */
const LEAF_FOLDERS = ['problems', 'progress']
const FLOW: Record<string, string[]> = {
  problems: [], progress: [], oci: [], kube: [],
  bundle: ['oci', 'kube'], values: ['oci', 'kube'],
  relocate: ['oci', 'kube', 'bundle'],
  archive: ['oci', 'kube', 'bundle', 'relocate'],
  render: ['oci', 'kube', 'bundle', 'values'],
  revision: ['oci', 'kube', 'bundle', 'values', 'render'],
  apply: ['oci', 'kube', 'bundle', 'values', 'render', 'revision', 'relocate'],
}
/** Format leaves inside a folder, shared with folders before it: the tar format (archives, bundle images, the image generator). */
const SHARED_FILES = new Set(['archive/tar.ts'])

/** The imports of `files` that run back up the flow, as `from -> to` (paths below src/). */
function upstreamImports(files: Map<string, string[]>): string[] {
  const bad: string[] = []
  for (const [file, deps] of files) {
    const from = relative(SRC, file).split('/')
    if (from.length < 2) continue
    const allowed = FLOW[from[0]!]
    if (!allowed) continue
    for (const dep of deps) {
      const to = relative(SRC, dep)
      const folder = to.split('/')
      if (folder.length < 2 || folder[0] === from[0] || folder[0]!.startsWith('..')) continue
      if (LEAF_FOLDERS.includes(folder[0]!) || allowed.includes(folder[0]!) || SHARED_FILES.has(to)) continue
      bad.push(`${from.join('/')} -> ${to}`)
    }
  }
  return bad.sort()
}

describe('source structure', () => {
  it('tells value imports from type-only ones', () => {
    expect(valueImports(`import {a, type B} from './a.js'\nimport type {C} from './c.js'\nimport {type D} from './d.js'\nexport {e} from './e.js'\nimport {\n  f,\n  g,\n} from './f.js'\nimport './side.js'\n`))
      .toEqual(['./a.js', './e.js', './f.js', './side.js'])
  })

  it('has no import cycle among the modules of src/', async () => {
    const graph = await importGraph(valueImports)
    expect(graph.size).toBeGreaterThan(100)
    expect(cycles(graph).map((c) => c.map((f) => relative(SRC, f)))).toEqual([])
    // the check itself: a cycle of three beside a module that imports itself
    expect(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['d']], ['e', ['a']]]))).toEqual([['a', 'b', 'c'], ['d']])
  })

  it('has no import that runs back up the flow (CONTRIBUTING.md: bundle -> relocate -> render -> apply, over two clients)', async () => {
    expect(upstreamImports(await importGraph(allImports))).toEqual([])
    // the check itself: a bundle module importing render, a client importing a stage
    expect(upstreamImports(new Map([
      [join(SRC, 'bundle', 'x.ts'), [join(SRC, 'render', 'meta.ts'), join(SRC, 'archive', 'tar.ts'), join(SRC, 'oci', 'index.ts'), join(SRC, 'errors.ts')]],
      [join(SRC, 'oci', 'y.ts'), [join(SRC, 'bundle', 'types.ts'), join(SRC, 'problems', 'problem.ts')]],
    ]))).toEqual(['bundle/x.ts -> render/meta.ts', 'oci/y.ts -> bundle/types.ts'])
  })

  it('reaches the registry client through src/oci/index.ts only, from the rest of src/', async () => {
    const inside: string[] = []
    for (const [file, deps] of await importGraph(allImports)) {
      if (relative(SRC, file).startsWith('oci/')) continue
      for (const to of deps.map((d) => relative(SRC, d))) if (to.startsWith('oci/') && to !== 'oci/index.ts') inside.push(`${relative(SRC, file)} -> ${to}`)
    }
    expect(inside).toEqual([])
  })

  it('core code never prints and never exits: only src/cli/ and src/commands/ do', async () => {
    const writes = /\bconsole\.(log|error|warn|info|debug)\(|\bprocess\.(stdout|stderr)\.write\(|\bprocess\.exit\(/
    const found: string[] = []
    for (const [file, text] of await sourceTexts()) {
      const at = relative(SRC, file)
      if (/^(cli|commands)\//.test(at)) continue
      text.split('\n').forEach((l, i) => { if (writes.test(l) && !/^\s*(\/\/|\*)/.test(l)) found.push(`${at}:${i + 1}`) })
    }
    expect(found).toEqual([])
    expect(writes.test('  process.stdout.write(line)')).toBe(true)
  })
})
