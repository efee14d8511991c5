/**
 * `kpi bundle import-kp`: a kp DependencyDescriptor becomes a bundle pinned by digest. Tags are
 * resolved against the source registry (pin.ts), stack ids read from the images as kp does, and
 * the result is checked as any bundle is; what the bundle cannot express comes back as notes.
 */
import {KpiError} from '../../errors.js'
import {readTextFile} from '../../textfile.js'
import type {RegistryClient} from '../../oci/index.js'
import {checkBundleText} from '../load.js'
import {pinBundle, type PinnedImage} from '../pin.js'
import {formatProblem} from '../problems.js'
import {serializeBundle} from '../serialize.js'
import {readStackId} from '../stack-id.js'
import type {Bundle} from '../types.js'
import {parseKpDescriptor, type KpApiVersion} from './descriptor.js'
import {kpToBundle, type ImportNote, type KpBase} from './to-bundle.js'

export interface ImportKpResult {
  bundle: Bundle
  apiVersion: KpApiVersion
  notes: ImportNote[]
  pinned: PinnedImage[]
}

export async function importKpDescriptor(o: {file: string; base: KpBase; client: RegistryClient; concurrency?: number}): Promise<ImportKpResult> {
  let text: string
  try {
    text = await readTextFile(o.file, 'descriptor')
  } catch (e) {
    if (e instanceof KpiError) throw e
    throw new KpiError('input', `${o.file}: cannot read the descriptor (${(e as NodeJS.ErrnoException).code ?? String(e)})`, {hint: 'give the path of the file kp import -f reads'})
  }
  const descriptor = parseKpDescriptor(text, o.file)
  const {bundle: tagged, notes, sources} = kpToBundle(descriptor, o.base)
  const {bundle, pinned} = await pinBundle(tagged, o.client, {
    concurrency: o.concurrency,
    // name what the user wrote: the descriptor's field (kpack's images: the --kpack-from bundle's)
    label: (path) => sources.has(path) ? `${o.file}: ${sources.get(path)}` : `${o.base.from}: ${path}`,
    hint: 'push the images or fix their references, then import again',
  })
  const ids = new Map<string, Promise<string>>()
  for (const s of bundle.stacks) {
    const key = `${s.buildImage} ${s.runImage}`
    if (!ids.has(key)) ids.set(key, readStackId(o.client, s))
  }
  // all awaited at once: awaited in turn, a stack that fails while an earlier one is still read
  // would be an unhandled rejection, which ends the process with a stack trace
  const read = new Map(await Promise.all([...ids].map(async ([key, id]) => [key, await id] as const)))
  for (const s of bundle.stacks) s.id = read.get(`${s.buildImage} ${s.runImage}`)!
  // the bundle must be one kpi reads: say what is wrong in terms of the descriptor it came from
  const check = checkBundleText(serializeBundle(bundle), `bundle made from ${o.file}`)
  if (!check.ok) {
    const lines = check.problems.map((p) => formatProblem({...p, line: undefined, col: undefined}))
    throw new KpiError('input', lines.length === 1 ? lines[0]! : [`${o.file}: the bundle made from it has ${lines.length} problems:`, ...lines.map((l) => `  ${l}`)].join('\n'))
  }
  return {bundle, apiVersion: descriptor.apiVersion, notes, pinned}
}
