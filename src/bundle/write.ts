/** Writes a bundle where the user asked: a `.yaml`/`.yml` path is the file, anything else a directory holding bundle.yaml. */
import {mkdir, rename, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {BUNDLE_FILE} from './load.js'
import {serializeBundle} from './serialize.js'
import type {Bundle} from './types.js'

/** Returns the file written. Written to a temporary name first, so a reader never sees half a bundle. */
export async function writeBundle(path: string, bundle: Bundle): Promise<string> {
  const file = /\.ya?ml$/i.test(path) ? path : join(path, BUNDLE_FILE)
  await mkdir(dirname(file), {recursive: true})
  return writeBundleFile(file, bundle)
}

/**
 * Rewrites the bundle file itself, whatever its name: a bundle read from a single file (which
 * need not end in .yaml) is rewritten there, not taken for a directory to write into.
 */
export async function writeBundleFile(file: string, bundle: Bundle): Promise<string> {
  const tmp = `${file}.tmp-${process.pid}`
  await writeFile(tmp, serializeBundle(bundle))
  await rename(tmp, file)
  return file
}
