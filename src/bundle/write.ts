/** Writes a bundle where the user asked: a `.yaml`/`.yml` path is the file, anything else a directory holding bundle.yaml. */
import {chmod, mkdir, readFile, rename, stat, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {isScalar, parseDocument, Scalar} from 'yaml'
import {isDeepStrictEqual} from 'node:util'
import {BUNDLE_FILE, parseBundle} from './load.js'
import {serializeBundle} from './serialize.js'
import type {Bundle} from './types.js'

/** The file `writeBundle(path)` writes. */
export const bundleFileAt = (path: string): string => (/\.ya?ml$/i.test(path) ? path : join(path, BUNDLE_FILE))

/** Returns the file written. Written to a temporary name first, so a reader never sees half a bundle. */
export async function writeBundle(path: string, bundle: Bundle): Promise<string> {
  const file = bundleFileAt(path)
  await mkdir(dirname(file), {recursive: true})
  return writeBundleFile(file, bundle)
}

/**
 * Rewrites the bundle file itself, whatever its name: a bundle read from a single file (which
 * need not end in .yaml) is rewritten there, not taken for a directory to write into.
 */
export async function writeBundleFile(file: string, bundle: Bundle, text = serializeBundle(bundle)): Promise<string> {
  const tmp = `${file}.tmp-${process.pid}`
  const mode = await stat(file).then((s) => s.mode & 0o7777, () => undefined)
  await writeFile(tmp, text)
  // a file rewritten in place keeps its permissions
  if (mode !== undefined) await chmod(tmp, mode)
  await rename(tmp, file)
  return file
}

/**
 * Rewrites the bundle file with only the given references changed (`stacks[0].runImage`, ...),
 * every other byte as it was: its comments, order, quoting and layout are the user's. Where the
 * file cannot be edited that way (or the edit would not read back as `bundle`), it is written
 * out whole.
 */
export async function rewriteBundleRefs(file: string, bundle: Bundle, changes: ReadonlyArray<{path: string; to: string}>): Promise<string> {
  const text = await readFile(file, 'utf8')
  const edited = editRefs(text, changes)
  const same = edited !== undefined && readsAs(edited, file, bundle)
  return writeBundleFile(file, bundle, same ? edited : undefined)
}

function readsAs(text: string, file: string, bundle: Bundle): boolean {
  try {
    return isDeepStrictEqual(parseBundle(text, file), bundle)
  } catch {
    return false
  }
}

/** `stores[0].sources[1].image` as the keys of a YAML path */
const keysOf = (path: string): Array<string | number> =>
  path.split('.').flatMap((part) => {
    const m = /^([^[]+)((?:\[\d+\])*)$/.exec(part)
    if (!m) return [part]
    return [m[1]!, ...[...m[2]!.matchAll(/\[(\d+)\]/g)].map((i) => Number(i[1]))]
  })

function editRefs(text: string, changes: ReadonlyArray<{path: string; to: string}>): string | undefined {
  const doc = parseDocument(text)
  if (doc.errors.length) return undefined
  const edits: Array<{from: number; to: number; text: string}> = []
  for (const c of changes) {
    const node = doc.getIn(keysOf(c.path), true)
    if (!isScalar(node) || !node.range) return undefined
    const quoted = node.type === Scalar.QUOTE_DOUBLE ? JSON.stringify(c.to) : node.type === Scalar.QUOTE_SINGLE ? `'${c.to.replace(/'/g, "''")}'` : node.type === Scalar.PLAIN ? c.to : undefined
    if (quoted === undefined) return undefined
    edits.push({from: node.range[0], to: node.range[1], text: quoted})
  }
  let out = text
  for (const e of edits.sort((a, b) => b.from - a.from)) out = out.slice(0, e.from) + e.text + out.slice(e.to)
  return out
}
