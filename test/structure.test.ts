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

describe('source structure', () => {
  it('tells value imports from type-only ones', () => {
    expect(valueImports(`import {a, type B} from './a.js'\nimport type {C} from './c.js'\nimport {type D} from './d.js'\nexport {e} from './e.js'\nimport {\n  f,\n  g,\n} from './f.js'\nimport './side.js'\n`))
      .toEqual(['./a.js', './e.js', './f.js', './side.js'])
  })

  it('has no import cycle among the modules of src/', async () => {
    const graph = new Map<string, string[]>()
    for (const file of await sources(SRC)) {
      const deps = valueImports(await readFile(file, 'utf8')).map((d) => normalize(join(dirname(file), d)).replace(/\.js$/, '.ts'))
      graph.set(file, deps)
    }
    expect(graph.size).toBeGreaterThan(100)
    expect(cycles(graph).map((c) => c.map((f) => relative(SRC, f)))).toEqual([])
  })
})
