/**
 * Pushing a referrer (a manifest with a `subject`, e.g. a signature or an SBOM) so that
 * `referrers()` finds it: registries with the OCI referrers API index it themselves; for the
 * others (distribution 2.8) the client maintains the `sha256-<hex>` fallback tag index, as the
 * OCI distribution spec 1.1 asks of clients.
 */
import {KpiError} from '../errors.js'
import {referrersTag, type OciClient} from './client.js'
import {digestOf} from './digest.js'
import {formatRepo} from './reference.js'
import {MediaTypes, type Descriptor, type ImageIndex, type RegistryClient, type Repo} from './types.js'

/** The descriptor an index of referrers lists for a manifest (spec: artifactType, else config type). */
export function referrerDescriptor(bytes: Buffer, mediaType: string): Descriptor & {subject?: Descriptor} {
  let m: {artifactType?: string; config?: {mediaType?: string}; annotations?: Record<string, string>; subject?: Descriptor}
  try {
    m = JSON.parse(bytes.toString('utf8')) as typeof m
  } catch {
    throw new KpiError('input', 'referrer manifest is not valid JSON')
  }
  const d: Descriptor & {subject?: Descriptor} = {mediaType, digest: digestOf(bytes), size: bytes.length}
  const artifactType = m.artifactType ?? m.config?.mediaType
  if (artifactType) d.artifactType = artifactType
  if (m.annotations && Object.keys(m.annotations).length) d.annotations = m.annotations
  if (m.subject) d.subject = m.subject
  return d
}

/**
 * Push `bytes` (a manifest with `subject`) by digest into `repo`, then add it to the fallback
 * tag index of its subject unless the registry serves the referrers API. Returns the digest.
 * The fallback update is read-modify-write: concurrent writers to one subject can lose entries.
 */
export async function attachReferrer(
  client: RegistryClient & Partial<Pick<OciClient, 'referrersApi'>>,
  repo: Repo,
  bytes: Buffer,
  mediaType: string,
): Promise<string> {
  const {subject, ...desc} = referrerDescriptor(bytes, mediaType)
  if (!subject?.digest) throw new KpiError('input', `referrer ${desc.digest} for ${formatRepo(repo)} has no subject`)
  const digest = await client.putManifest(repo, desc.digest, bytes, mediaType)
  await linkReferrer(client, repo, subject.digest, {...desc, digest})
  return digest
}

/**
 * Make `referrer` (already pushed) discoverable from `subject`: a no-op where the registry serves
 * the referrers API, else a merge into the subject's `sha256-<hex>` fallback tag index.
 */
export async function linkReferrer(
  client: RegistryClient & Partial<Pick<OciClient, 'referrersApi'>>,
  repo: Repo,
  subject: string,
  referrer: Descriptor,
): Promise<void> {
  if (client.referrersApi && (await client.referrersApi(repo))) return
  const tag = referrersTag(subject)
  let index: ImageIndex = {schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: []}
  try {
    const existing = await client.getManifest(repo, tag)
    const parsed = JSON.parse(existing.bytes.toString('utf8')) as ImageIndex
    if (Array.isArray(parsed.manifests)) index = {...parsed, manifests: parsed.manifests}
  } catch (e) {
    if (!(e instanceof KpiError && e.kind === 'not-found')) throw e
  }
  if (index.manifests.some((m) => m.digest === referrer.digest)) return
  index.manifests.push(referrer)
  await client.putManifest(repo, tag, Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex)
}
