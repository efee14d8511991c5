/**
 * Pins a bundle written with tags (as kbld does for Kubernetes YAML): every reference without a
 * digest is resolved against its registry and written `registry/repository:tag@sha256:…`.
 * References that already carry a digest are kept and not looked up. Every reference that cannot
 * be resolved is named in one error, not just the first.
 */
import {KpiError, formatError, isKpiError, type ErrorKind} from '../errors.js'
import {formatReference, parseReference, type RegistryClient} from '../oci/index.js'
import {limit} from '../pool.js'
import {bundleImages, mapBundleImages} from './images.js'
import type {Bundle} from './types.js'

export interface PinnedImage {
  path: string
  /** the reference as written */
  from: string
  /** the reference with its digest */
  to: string
}

export interface PinResult {
  bundle: Bundle
  /** the references that were resolved (those already pinned are not listed) */
  pinned: PinnedImage[]
}

/** `registry/repository:tag@digest` for a reference by tag (`latest` when it names none, as docker reads it). */
async function resolveTag(client: RegistryClient, ref: string): Promise<string> {
  const parsed = parseReference(ref)
  const tag = parsed.tag ?? 'latest'
  const found = await client.headManifest({registry: parsed.registry, repository: parsed.repository}, tag)
  if (!found) throw new KpiError('not-found', `no image ${formatReference({...parsed, tag})} in the registry`)
  return formatReference({...parsed, tag, digest: found.digest})
}

export interface PinOptions {
  concurrency?: number
  /** names a bundle path in the user's terms (a kp descriptor's field); failures named alike are said once */
  label?: (path: string) => string
  /** what to do after fixing the references, for the error's hint */
  hint?: string
}

export async function pinBundle(bundle: Bundle, client: RegistryClient, opts: PinOptions = {}): Promise<PinResult> {
  const pool = limit(opts.concurrency ?? 8)
  const lookups = new Map<string, Promise<string>>()
  const unpinned = bundleImages(bundle).filter((i) => parseReference(i.ref).digest === undefined)
  for (const {ref} of unpinned) {
    if (!lookups.has(ref)) {
      const p = pool(() => resolveTag(client, ref))
      p.catch(() => {})
      lookups.set(ref, p)
    }
  }
  const resolved = new Map<string, string>()
  const failures: Array<{path: string; ref: string; error: unknown}> = []
  for (const {path, ref} of unpinned) {
    try {
      resolved.set(ref, await lookups.get(ref)!)
    } catch (error) {
      const label = opts.label?.(path) ?? path
      if (!failures.some((f) => f.path === label && f.ref === ref)) failures.push({path: label, ref, error})
    }
  }
  if (failures.length) throw unresolvedError(failures, opts.hint ?? 'push the images or fix their references, then run kpi bundle lock again')
  const pinned = unpinned.map(({path, ref}) => ({path, from: ref, to: resolved.get(ref)!}))
  return {bundle: mapBundleImages(bundle, (ref) => resolved.get(ref) ?? ref), pinned}
}

function unresolvedError(failures: Array<{path: string; ref: string; error: unknown}>, hint: string): KpiError {
  // the kind of the first failure decides the exit code; an auth failure among not-founds is the one to fix first
  const kinds = failures.map((f) => (isKpiError(f.error) ? f.error.kind : 'internal' as ErrorKind))
  const kind = kinds.find((k) => k === 'auth' || k === 'tls' || k === 'network') ?? kinds[0] ?? 'failed'
  const line = (f: {path: string; ref: string; error: unknown}) => `${f.path}: ${f.ref}: ${formatError(f.error)}`
  const details = {unresolved: failures.map((f) => ({path: f.path, ref: f.ref, error: formatError(f.error)}))}
  if (failures.length === 1) return new KpiError(kind, `cannot resolve ${line(failures[0]!)}`, {hint, details})
  return new KpiError(kind, [`cannot resolve ${failures.length} images to digests (${hint}):`, ...failures.map((f) => `  ${line(f)}`)].join('\n'), {details})
}
