/** A registry as a relocation source and sink, over the OCI client. */
import {type FetchedManifest, linkReferrer, type RegistryClient} from '../oci/index.js'
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
    manifestImpliesContent: true,
    hasBlob: (repo, digest) => client.hasBlob(repo, digest),
    hasManifest: async (repo, digest) => (await client.headManifest(repo, digest)) !== undefined,
    mountBlob: (repo, digest, from) => client.mountBlob(repo, digest, from),
    putBlob: (repo, digest, size, open) => client.putBlob(repo, digest, size, open),
    // the executor asked hasManifest just before: called for a manifest that is missing, or to set tags
    putManifest: async (repo, m: FetchedManifest, tags, exists) => {
      if (!exists) await client.putManifest(repo, m.digest, m.bytes, m.mediaType)
      for (const t of tags) await client.putManifest(repo, t, m.bytes, m.mediaType)
    },
    linkReferrer: (repo, subject, referrer) => linkReferrer(client, repo, subject, referrer),
  }
}
