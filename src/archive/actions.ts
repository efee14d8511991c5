/**
 * The air-gap relocations by name, each one call of relocate() with archive endpoints:
 *   registry (or any source) -> archive   relocateToArchive (optionally a delta against an older version)
 *   archive  -> registry                  relocateFromArchive (contacts no registry but the destination)
 *   OCI layout dir -> registry            relocateFromOciLayout
 * Each gives the same lock as registry-to-registry relocation to the same --to-repo.
 */
import type {Bundle, BundleFile, LoadedBundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import type {RegistryClient} from '../oci/index.js'
import type {OnEvent} from '../progress/events.js'
import type {ImageSource} from '../relocate/endpoints.js'
import type {RelocationSummary} from '../relocate/execute.js'
import {fromRegistry, fromSource, toRegistry} from '../relocate/registry-endpoints.js'
import {relocate} from '../relocate/relocate.js'
import {toArchive, type ToArchiveTargetOptions} from './export.js'
import {fromArchive, fromLayout} from './import.js'
import type {OpenedArchive} from './reader.js'
import type {Toc} from './toc.js'
import type {ArchiveInfo} from './writer.js'

export {sourceBundle} from './delta.js'
export {refName} from './toc-build.js'

export interface ToArchiveOptions extends ToArchiveTargetOptions {
  bundle: LoadedBundle
  file: string
  /** reaches the source registries */
  client?: RegistryClient
  /** read images from here instead of the registries (e.g. an OCI layout directory) */
  source?: ImageSource
  /** follow OCI 1.1 referrers (signatures, SBOMs); default true */
  referrers?: boolean
  concurrency?: number
  onEvent?: OnEvent
}

export interface ToArchiveResult {
  archive: ArchiveInfo
  toc: Toc
  summary: RelocationSummary
}

/** Where and how images are pushed, for every import into a registry. */
interface ToRegistryOptions {
  /** REGISTRY/PREFIX */
  toRepo: string
  /** reaches the destination registry (and nothing else is asked of it) */
  client: RegistryClient
  referrers?: boolean
  concurrency?: number
  /** uploads at once to the destination */
  uploads?: number
  onEvent?: OnEvent
}

export interface FromArchiveOptions extends ToRegistryOptions {
  file: string
}

export interface FromArchiveResult {
  lock: Bundle
  summary: RelocationSummary
  toc: Toc
  /** the bundle the archive carries, with source references */
  bundle: Bundle
  bundleFiles: BundleFile[]
}

export interface FromLayoutOptions extends ToRegistryOptions {
  bundle: LoadedBundle
  dir: string
}

export async function relocateToArchive(o: ToArchiveOptions): Promise<ToArchiveResult> {
  if (!o.source && !o.client) throw new KpiError('internal', 'relocateToArchive needs a client or a source')
  const from = o.source ? fromSource(o.source, o.bundle) : fromRegistry(o.client!, o.bundle)
  const r = await relocate({from, to: toArchive(o.file, o), referrers: o.referrers, concurrency: o.concurrency, onEvent: o.onEvent})
  return {...r.target, summary: r.summary}
}

export async function relocateFromArchive(o: FromArchiveOptions): Promise<FromArchiveResult> {
  const to = toRegistry(o.client, o.toRepo, o.uploads)
  let archive: OpenedArchive | undefined
  const r = await relocate({from: fromArchive(o.file, (a) => (archive = a)), to, referrers: o.referrers, concurrency: o.concurrency, onEvent: o.onEvent})
  return {lock: r.lock, summary: r.summary, toc: archive!.toc, bundle: r.bundle, bundleFiles: archive!.bundleFiles}
}

/** Relocates a bundle's images from an OCI layout directory (e.g. written by skopeo) to a registry. */
export async function relocateFromOciLayout(o: FromLayoutOptions): Promise<{lock: Bundle; summary: RelocationSummary}> {
  const r = await relocate({from: fromLayout(o.dir, o.bundle), to: toRegistry(o.client, o.toRepo, o.uploads), referrers: o.referrers, concurrency: o.concurrency, onEvent: o.onEvent})
  return {lock: r.lock, summary: r.summary}
}
