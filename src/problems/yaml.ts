/** Where in a YAML file a node or a field path is, as 1-based line and column, for problems. */
import {isMap, isSeq, type Document, type LineCounter, type Node, type Pair} from 'yaml'
import type {Problem} from './problem.js'

export type PathSegment = string | number

/** Line and column of a node, or nothing when the node has no range (absent, synthesized). */
export function nodePosition(lc: LineCounter, node: Node | null | undefined): {line?: number; col?: number} {
  const offset = node?.range?.[0]
  if (offset === undefined) return {}
  const {line, col} = lc.linePos(offset)
  return {line, col}
}

/** Line and column of the node at `path` (of its key when `onKey`), falling back to the nearest parent. */
export function pathPosition(doc: Document, lc: LineCounter, path: PathSegment[], onKey = false): {line?: number; col?: number} {
  let node: unknown = doc.contents
  let best: number | undefined = (node as Node | null)?.range?.[0]
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!
    const last = i === path.length - 1
    if (isMap(node)) {
      const pair = (node.items as Pair[]).find((p) => keyString(p.key) === String(seg))
      if (!pair) break
      const keyStart = (pair.key as Node | null)?.range?.[0]
      if (last && onKey && keyStart !== undefined) {
        best = keyStart
        break
      }
      node = pair.value
      best = (node as Node | null)?.range?.[0] ?? keyStart ?? best
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg]
      best = (node as Node | null)?.range?.[0] ?? best
    } else break
  }
  if (best === undefined) return {}
  const {line, col} = lc.linePos(best)
  return {line, col}
}

function keyString(k: unknown): string | undefined {
  if (k && typeof k === 'object' && 'value' in k) return String((k as {value: unknown}).value)
  return typeof k === 'string' ? k : undefined
}

/** `registry.username`, `teams[1].name` */
export function fieldPath(path: PathSegment[]): string {
  let s = ''
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : s ? `.${seg}` : seg
  return s
}

/** A YAML parser error or warning as a problem at its position. */
export function yamlSyntaxProblem(file: string, lc: LineCounter, e: {message: string; pos: [number, number]}): Problem {
  const {line, col} = lc.linePos(e.pos[0])
  // yaml may append " at line L, column C" and a code excerpt; the position is already in front.
  const message = (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '')
  return {file, line, col, message: `YAML syntax: ${message}`}
}
