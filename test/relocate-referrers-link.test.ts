/**
 * Several referrers of one subject relocated to a registry without the referrers API: each is
 * added to the subject's `sha256-<hex>` fallback tag index, a read-modify-write of one tag. The
 * destination here is an in-memory registry client whose manifest reads and writes take a turn
 * of the event loop, as real requests do, so updates running at once interleave.
 */
import {Readable} from 'node:stream'
import {setImmediate as tick} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {sha256Digest} from '../src/oci/digest.js'
import {parseIndexManifests, referrersTag} from '../src/oci/referrers.js'
import {MediaTypes, type Descriptor, type FetchedManifest, type RegistryClient, type Repo} from '../src/oci/types.js'
import type {ImageSource} from '../src/relocate/endpoints.js'
import {executePlan} from '../src/relocate/execute.js'
import {planImages} from '../src/relocate/plan.js'
import {registrySink} from '../src/relocate/registry-endpoints.js'

const json = (v: unknown) => Buffer.from(JSON.stringify(v))

/** A registry without the referrers API, in memory: manifests by digest and by tag, and blobs. */
function memoryRegistry(): RegistryClient & {referrersApi(repo: Repo): Promise<boolean>; manifests: Map<string, FetchedManifest>} {
  const manifests = new Map<string, FetchedManifest>()
  const blobs = new Set<string>()
  const k = (repo: Repo, ref: string) => `${repo.repository}@${ref}`
  return {
    manifests,
    referrersApi: async () => false,
    getManifest: async (repo, ref) => {
      await tick()
      const m = manifests.get(k(repo, ref))
      if (!m) throw new KpiError('not-found', `no manifest ${ref}`)
      return m
    },
    headManifest: async (repo, ref) => {
      await tick()
      const m = manifests.get(k(repo, ref))
      return m ? {mediaType: m.mediaType, digest: m.digest, size: m.bytes.length} : undefined
    },
    putManifest: async (repo, ref, bytes, mediaType) => {
      await tick()
      const m = {bytes, mediaType, digest: sha256Digest(bytes)}
      manifests.set(k(repo, ref), m)
      manifests.set(k(repo, m.digest), m)
      return m.digest
    },
    hasBlob: async (_repo, digest) => blobs.has(digest),
    getBlob: async () => { throw new Error('not a source') },
    putBlob: async (_repo, digest, _size, open) => {
      for await (const _ of await open()) { /* drained */ }
      blobs.add(digest)
      return 'uploaded'
    },
    mountBlob: async () => false,
    referrers: async () => [],
    listTags: async () => [],
    close: async () => {},
  }
}

describe('referrers relocated to a registry without the referrers API', () => {
  it('lists every referrer of a subject in its fallback tag index', async () => {
    const repo: Repo = {registry: 'src.example', repository: 'app'}
    const dst: Repo = {registry: 'dst.example', repository: 'app'}
    const empty = Buffer.from('{}')
    const blobs = new Map<string, Buffer>([[sha256Digest(empty), empty]])
    const layer = Buffer.from('layer')
    blobs.set(sha256Digest(layer), layer)
    const image = json({
      schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {mediaType: MediaTypes.ociEmpty, digest: sha256Digest(empty), size: 2},
      layers: [{mediaType: 'application/octet-stream', digest: sha256Digest(layer), size: layer.length}],
    })
    const subject: Descriptor = {mediaType: MediaTypes.ociManifest, digest: sha256Digest(image), size: image.length}
    const sigs = Array.from({length: 6}, (_, i) => json({
      schemaVersion: 2, mediaType: MediaTypes.ociManifest, artifactType: `application/vnd.example.sig${i}`,
      config: {mediaType: MediaTypes.ociEmpty, digest: sha256Digest(empty), size: 2}, layers: [], subject,
    }))
    const byDigest = new Map<string, Buffer>([[subject.digest, image], ...sigs.map((s) => [sha256Digest(s), s] as [string, Buffer])])
    const source: ImageSource = {
      name: 'memory',
      getManifest: async (_r, ref) => ({bytes: byDigest.get(ref)!, mediaType: MediaTypes.ociManifest, digest: ref}),
      getBlob: async (_r, digest) => Readable.from([blobs.get(digest)!]),
      referrers: async (_r, digest) => (digest === subject.digest ? sigs.map((s) => ({mediaType: MediaTypes.ociManifest, digest: sha256Digest(s), size: s.length})) : []),
    }
    const plan = await planImages(source, [{path: 'app', ref: 'app', src: repo, dst, digest: subject.digest, tags: []}])
    expect(plan.manifests).toHaveLength(1 + sigs.length)
    const client = memoryRegistry()
    await executePlan(plan, source, registrySink(client, dst.registry))
    const index = client.manifests.get(`app@${referrersTag(subject.digest)}`)
    expect(index).toBeDefined()
    expect(parseIndexManifests(index!.bytes).map((d) => d.digest).sort()).toEqual(sigs.map((s) => sha256Digest(s)).sort())
  })
})
