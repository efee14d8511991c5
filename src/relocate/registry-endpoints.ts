/** A registry as a relocation source and sink, over the OCI client, and as the endpoints relocate() takes. */
import {algorithmOf, type FetchedManifest, linkReferrer, type RegistryClient} from '../oci/index.js'
import type {Bundle, LoadedBundle} from '../bundle/types.js'
import type {ImageSink, ImageSource} from './endpoints.js'
import {parseDestination, type Destination} from './naming.js'
import type {OpenedSource, RelocationFrom, RelocationTo} from './relocate.js'

export function registrySource(client: RegistryClient): ImageSource {
  return {
    name: 'source registry',
    getManifest: (repo, reference) => client.getManifest(repo, reference),
    getBlob: (repo, digest, size, opts) => client.getBlob(repo, digest, size, opts),
    referrers: (repo, digest) => client.referrers(repo, digest),
  }
}

export function registrySink(client: RegistryClient, registry: string, concurrency = 8): ImageSink {
  let mounts: 'unknown' | 'asked' | 'check' | 'ignored' = 'unknown'
  return {
    name: `registry ${registry}`,
    registry,
    concurrency,
    manifestImpliesContent: true,
    verifiesDigests: true,
    hasBlob: (repo, digest) => client.hasBlob(repo, digest),
    hasManifest: async (repo, digest) => (await client.headManifest(repo, digest)) !== undefined,
    mountBlob: (repo, digest, from) => client.mountBlob(repo, digest, from),
    putBlob: (repo, digest, size, open, opts) => client.putBlob(repo, digest, size, open, opts),
    mountsCheck: () => mounts === 'check',
    probeMounts: async (repo, digest) => {
      if (mounts !== 'unknown') return
      mounts = 'asked'
      // a failed probe proves nothing: blobs keep their HEAD
      mounts = (await client.mountBlob(repo, digest, repo.repository).catch(() => false)) ? 'check' : 'ignored'
    },
    // the executor has asked hasManifest (just before, or when it checked the image's root):
    // called for a manifest that is missing, or to set tags. A missing manifest with a tag is pushed by the tag alone: the registry keeps it under
    // its digest too, and says which (client.putManifest checks that it is this one).
    putManifest: async (repo, m: FetchedManifest, tags, exists) => {
      const byTag = !exists && tags.length > 0 && algorithmOf(m.digest) === 'sha256'
      if (!exists && !byTag) await client.putManifest(repo, m.digest, m.bytes, m.mediaType)
      for (const t of tags) await client.putManifest(repo, t, m.bytes, m.mediaType)
    },
    linkReferrer: (repo, subject, referrer) => linkReferrer(client, repo, subject, referrer),
  }
}

/**
 * A bundle's images read through `source` (registries by default); `bundle` may be a loaded
 * bundle (its files go into an archive) or a bundle in memory.
 */
export function fromSource(source: ImageSource, bundle: LoadedBundle | Bundle, more?: OpenedSource['moreRoots']): RelocationFrom {
  const loaded = 'bundle' in bundle ? bundle : undefined
  return {open: async () => ({bundle: loaded ? loaded.bundle : (bundle as Bundle), ...(loaded ? {loaded} : {}), source, ...(more ? {moreRoots: more} : {})})}
}

/** A bundle's images where its references say they are (and `more`, e.g. the bundle image). */
export const fromRegistry = (client: RegistryClient, bundle: LoadedBundle | Bundle, more?: OpenedSource['moreRoots']): RelocationFrom =>
  fromSource(registrySource(client), bundle, more)

/** Into a registry under REGISTRY/PREFIX (`toRepo`), `uploads` blobs at once; the lock points there. */
export function toRegistry(client: RegistryClient, to: string | Destination, uploads?: number): RelocationTo<undefined> {
  const destination = typeof to === 'string' ? parseDestination(to) : to
  const toRepo = typeof to === 'string' ? to : `${to.registry}${to.prefix ? `/${to.prefix}` : ''}`
  return {
    destination,
    open: async () => ({sink: registrySink(client, destination.registry, uploads), registry: {client, toRepo}}),
  }
}
