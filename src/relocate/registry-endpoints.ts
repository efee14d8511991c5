/** A registry as a relocation source and sink, over the OCI client. */
import type {Descriptor, FetchedManifest, ImageIndex, RegistryClient, Repo} from '../oci/types.js'
import {MediaTypes} from '../oci/types.js'
import type {ImageSink, ImageSource} from './endpoints.js'

export function registrySource(client: RegistryClient): ImageSource {
  return {
    name: 'source registry',
    getManifest: (repo, reference) => client.getManifest(repo, reference),
    getBlob: (repo, digest, size) => client.getBlob(repo, digest, size),
    referrers: (repo, digest) => client.referrers(repo, digest),
  }
}

export function registrySink(client: RegistryClient, registry: string, concurrency = 8): ImageSink {
  return {
    name: `registry ${registry}`,
    registry,
    concurrency,
    hasBlob: (repo, digest) => client.hasBlob(repo, digest),
    hasManifest: async (repo, digest) => (await client.headManifest(repo, digest)) !== undefined,
    mountBlob: (repo, digest, from) => client.mountBlob(repo, digest, from),
    putBlob: (repo, digest, size, open) => client.putBlob(repo, digest, size, open),
    putManifest: async (repo, m: FetchedManifest, tags) => {
      if (!(await client.headManifest(repo, m.digest))) await client.putManifest(repo, m.digest, m.bytes, m.mediaType)
      for (const t of tags) await client.putManifest(repo, t, m.bytes, m.mediaType)
    },
    linkReferrer: (repo, subject, referrer) => linkReferrer(client, repo, subject, referrer),
  }
}

/**
 * Registries with the referrers API index a manifest's `subject` themselves; for the others
 * (distribution 2.8 among them) the OCI 1.1 fallback is an index under the tag `sha256-<hex>`
 * of the subject, which this merges the referrer into.
 */
async function linkReferrer(client: RegistryClient, repo: Repo, subject: string, referrer: Descriptor): Promise<void> {
  const listed = await client.referrers(repo, subject)
  if (listed.some((d) => d.digest === referrer.digest)) return
  const tag = subject.replace(':', '-')
  let index: ImageIndex = {schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: []}
  if (await client.headManifest(repo, tag)) {
    const current = await client.getManifest(repo, tag)
    index = JSON.parse(current.bytes.toString('utf8')) as ImageIndex
  }
  index.manifests = [...index.manifests.filter((d) => d.digest !== referrer.digest), referrer]
  await client.putManifest(repo, tag, Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex)
}
