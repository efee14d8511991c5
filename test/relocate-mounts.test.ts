/**
 * How blobs are placed at a registry destination: a registry that answers a mount of a blob from
 * its own repository (distribution) is asked one request per blob instead of a HEAD and then an
 * upload; one that ignores mounts (as ECR does unless asked to) keeps a HEAD before every upload,
 * so a blob already there is never sent again. Real distribution registries, with a loopback
 * proxy in front of the destination that logs every request (and, for the second kind, drops the
 * mount parameters). And a manifest the registry refuses for a blob this run has placed is pushed
 * again once its blobs answer a HEAD (distribution rewrites link files in place), a few times at most.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createRegistryClient, type OciClient} from '../src/oci/client.js'
import {sha256Digest} from '../src/oci/digest.js'
import {MediaTypes, type Repo} from '../src/oci/types.js'
import {executePlan} from '../src/relocate/execute.js'
import {planImages, type PlanRoot} from '../src/relocate/plan.js'
import {registrySink, registrySource} from '../src/relocate/registry-endpoints.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'
import {startFaultProxy, type FaultProxy} from './helpers/fault-proxy.js'

let dir: string
let src: Registry
let client: OciClient
const stops: Array<() => Promise<unknown>> = []

/** a layer of `kib` KiB whose bytes depend on `seed` */
const layer = (seed: string, kib: number): Buffer => Buffer.from(`${seed}\n`.repeat(Math.ceil((kib * 1024) / (seed.length + 1)))).subarray(0, kib * 1024)

async function putBlob(repo: Repo, bytes: Buffer): Promise<{mediaType: string; digest: string; size: number}> {
  const digest = sha256Digest(bytes)
  await client.putBlob(repo, digest, bytes.length, () => Readable.from([bytes]))
  return {mediaType: MediaTypes.ociLayerGzip, digest, size: bytes.length}
}

/** three images in two repositories, sharing one layer: their blobs, and roots to relocate them */
const images = [
  {repository: 'team/app', tag: 'a', layers: [layer('shared base', 96), layer('app a', 40)]},
  {repository: 'team/app', tag: 'b', layers: [layer('shared base', 96), layer('app b', 48)]},
  {repository: 'team/tool', tag: 'c', layers: [layer('shared base', 96), layer('tool c', 64), layer('tool c extra', 8)]},
]
const roots: Array<Omit<PlanRoot, 'dst'> & {dstRepository: string}> = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-mounts-'))
  src = await startRegistry({runDir: dir, name: 'src'})
  stops.push(() => src.stop())
  client = createRegistryClient({plainHttp: () => true, credentials: async () => undefined})
  for (const i of images) {
    const repo = {registry: src.host, repository: i.repository}
    const layers = await Promise.all(i.layers.map((l) => putBlob(repo, l)))
    const config = await putBlob(repo, Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', tag: i.tag})))
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: {...config, mediaType: MediaTypes.ociConfig}, layers}))
    const digest = await client.putManifest(repo, i.tag, manifest, MediaTypes.ociManifest)
    roots.push({path: i.tag, ref: `${src.host}/${i.repository}@${digest}`, src: repo, digest, tags: [i.tag], dstRepository: `copy/${i.repository}`})
  }
})

afterAll(async () => {
  await client?.close()
  for (const s of stops.reverse()) await s()
  await rm(dir, {recursive: true, force: true})
})

/** A fresh destination registry behind a logging proxy; `ignoreMounts` drops the mount parameters. */
async function destination(name: string, ignoreMounts: boolean): Promise<{host: string; proxy: FaultProxy}> {
  const reg = await startRegistry({runDir: dir, name})
  stops.push(() => reg.stop())
  const proxy = await startFaultProxy(reg.host, ignoreMounts ? {rewrite: (u) => u.replace(/\?mount=[^&]*&from=[^&]*$/, '')} : {})
  stops.push(() => proxy.stop())
  proxy.set([])
  return {host: proxy.host, proxy}
}

/** the layers of the third image that no other image has */
const own = images[2]!.layers.slice(1)

/** Relocates the three images to `host`, with the third image's own layers put there beforehand. */
async function relocateWithLayersAlreadyThere(host: string, proxy: FaultProxy) {
  const third = {registry: host, repository: roots[2]!.dstRepository}
  for (const l of own) await putBlob(third, l)
  const already = own.reduce((a, l) => a + l.length, 0)
  proxy.set([])
  const planRoots = roots.map(({dstRepository, ...r}) => ({...r, dst: {registry: host, repository: dstRepository}}))
  const plan = await planImages(registrySource(client), planRoots)
  const summary = await executePlan(plan, registrySource(client), registrySink(client, host), {largestFirst: true})
  const blobRequests = proxy.log().map((r) => r.key).filter((k) => k.includes('/blobs/'))
  return {summary, already, blobRequests, uniqueBytes: plan.uniqueBytes}
}

describe('placing blobs at a registry', () => {
  it('asks a registry that answers mounts one request per blob: no HEAD after the first blob, and what is there is not sent again', async () => {
    const {host, proxy} = await destination('dst-mounts', false)
    const r = await relocateWithLayersAlreadyThere(host, proxy)
    expect(r.summary.bytesMoved).toBe(r.uniqueBytes - r.already)
    // the smallest blob is placed first, by a HEAD; a mount of it from its own repository shows the registry answers mounts
    const heads = r.blobRequests.filter((k) => k.startsWith('HEAD'))
    expect(heads).toHaveLength(1)
    const selfMounts = r.blobRequests.filter((k) => {
      const m = /^POST \/v2\/(.+)\/blobs\/uploads\/\?mount=[^&]+&from=([^&]+)$/.exec(k)
      return m && decodeURIComponent(m[2]!) === m[1]
    })
    // every other blob of its first repository went by one mount request from that repository
    expect(selfMounts.length).toBeGreaterThanOrEqual(r.summary.blobs.copied)
    // the layers already there were found by that request, and nothing else was asked about them
    expect(r.summary.blobs.skipped).toBe(own.length)
    // the shared layer went to the other repository by a mount from where it was first placed
    expect(r.summary.blobs.mounted).toBeGreaterThanOrEqual(1)
    // one request per blob, besides the uploads' PUTs: the HEAD, the probe, and one POST each
    const posts = r.blobRequests.filter((k) => k.startsWith('POST'))
    const distinctBlobs = r.summary.blobs.copied + r.summary.blobs.skipped + r.summary.blobs.mounted
    expect(posts.length + heads.length).toBeLessThanOrEqual(distinctBlobs + 2)
  })

  it('keeps a HEAD before every upload at a registry that ignores mounts, so what is there is not sent again', async () => {
    const {host, proxy} = await destination('dst-no-mounts', true)
    const r = await relocateWithLayersAlreadyThere(host, proxy)
    // what was there is not sent; the shared layer is sent again to its second repository, as
    // the registry will not mount it (a mount-first placement would have sent every blob)
    expect(r.summary.bytesMoved).toBe(r.uniqueBytes - r.already + images[0]!.layers[0]!.length)
    expect(r.summary.blobs.skipped).toBe(own.length)
    const mountPosts = r.blobRequests.filter((k) => k.includes('?mount='))
    const heads = r.blobRequests.filter((k) => k.startsWith('HEAD'))
    // the one probe, declined, then the shared layer's mounts (declined too) before it is uploaded
    expect(mountPosts.filter((k) => { const m = /\/v2\/(.+)\/blobs\/uploads\/\?mount=[^&]+&from=([^&]+)$/.exec(k); return m && decodeURIComponent(m[2]!) === m[1] })).toHaveLength(1)
    expect(heads.length).toBeGreaterThanOrEqual(r.summary.blobs.copied + own.length)
    // the declined probe's upload session was closed
    expect(r.blobRequests.filter((k) => k.startsWith('DELETE')).length).toBeGreaterThanOrEqual(1)
  })
})

describe('a large blob', () => {
  it('does not wait for the mount probe: it is asked about (HEAD) before the probe\'s mount, and copied once', async () => {
    const repo = {registry: src.host, repository: 'team/big'}
    const big = layer('large layer', 17 * 1024)
    const small = layer('small layer', 4)
    const layers = [await putBlob(repo, small), await putBlob(repo, big)]
    const config = await putBlob(repo, Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', tag: 'big'})))
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: {...config, mediaType: MediaTypes.ociConfig}, layers}))
    const digest = await client.putManifest(repo, 'big', manifest, MediaTypes.ociManifest)
    const {host, proxy} = await destination('dst-large', false)
    const dst = {registry: host, repository: 'copy/team/big'}
    const plan = await planImages(registrySource(client), [{path: 'big', ref: `${src.host}/team/big@${digest}`, src: repo, dst, digest, tags: []}])
    const summary = await executePlan(plan, registrySource(client), registrySink(client, host), {largestFirst: true})
    expect(summary.bytesMoved).toBe(plan.uniqueBytes)
    const keys = proxy.log().map((r) => r.key)
    const bigDigest = layers[1]!.digest
    const probe = keys.findIndex((k) => /^POST \/v2\/copy\/team\/big\/blobs\/uploads\/\?mount=/.test(k) && k.includes(encodeURIComponent('copy/team/big')))
    const bigHead = keys.indexOf(`HEAD /v2/copy/team/big/blobs/${bigDigest}`)
    expect(probe, keys.join('\n')).toBeGreaterThan(-1)
    expect(bigHead, keys.join('\n')).toBeGreaterThan(-1)
    expect(bigHead).toBeLessThan(probe)
    // and sent once
    expect(keys.filter((k) => k.startsWith('PUT ') && k.includes(bigDigest.slice(7)))).toHaveLength(1)
  })
})

describe('an upload without a mount to ask for', () => {
  /** one image whose config is at the destination already: its layer is the one blob uploaded */
  const oneUpload = async (name: string, seed: string, kib = 256) => {
    const repo = {registry: src.host, repository: `team/${name}`}
    const l = await putBlob(repo, layer(seed, kib))
    const config = await putBlob(repo, Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', tag: name})))
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: {...config, mediaType: MediaTypes.ociConfig}, layers: [l]}))
    const digest = await client.putManifest(repo, name, manifest, MediaTypes.ociManifest)
    const srcProxy = await startFaultProxy(src.host)
    stops.push(() => srcProxy.stop())
    srcProxy.set([])
    // a registry that ignores mounts: the layer goes by a HEAD, then a session without a mount
    const {host, proxy} = await destination(`dst-${name}`, true)
    await client.putBlob({registry: host, repository: `copy/team/${name}`}, config.digest, config.size, () => Readable.from([Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', tag: name}))]))
    const plan = await planImages(registrySource(client), [{path: name, ref: `${srcProxy.host}/team/${name}@${digest}`, src: {registry: srcProxy.host, repository: `team/${name}`}, dst: {registry: host, repository: `copy/team/${name}`}, digest, tags: [name]}])
    const session = new RegExp(`^POST /v2/copy/team/${name}/blobs/uploads/$`)
    const layerGet = `GET /v2/team/${name}/blobs/${l.digest}`
    return {plan, host, proxy, srcProxy, session, layerGet, layer: l}
  }

  it('reads the source while the registry opens the session', async () => {
    const u = await oneUpload('slow-session', 'slow session layer')
    u.proxy.set([{match: u.session, status: 0, delayMs: 500}])
    const summary = await executePlan(u.plan, registrySource(client), registrySink(client, u.host), {largestFirst: true})
    expect(summary.bytesMoved).toBe(u.layer.size)
    const posts = u.proxy.log().filter((r) => u.session.test(r.key))
    const gets = u.srcProxy.log().filter((r) => r.key === u.layerGet)
    expect(posts, u.proxy.log().map((r) => r.key).join('\n')).toHaveLength(1)
    expect(gets).toHaveLength(1)
    // asked for while the session was still being opened, not after it was
    expect(gets[0]!.at - posts[0]!.at).toBeLessThan(400)
  })

  it('lets the source go when the registry opens no session, and fails with its refusal', async () => {
    // a layer larger than the sockets' buffers: a download nobody let go would stall half-sent;
    // held back 300 ms at the source, it is still on its way when the refusal comes
    const u = await oneUpload('no-session', 'no session layer', 15 * 1024)
    u.srcProxy.set([{match: new RegExp(`^GET /v2/team/no-session/blobs/`), status: 0, delayMs: 300}])
    u.proxy.set([{match: u.session, status: 403, code: 'DENIED'}])
    await expect(executePlan(u.plan, registrySource(client), registrySink(client, u.host), {largestFirst: true})).rejects.toThrow(/denied|403/i)
    expect(u.proxy.log().filter((r) => u.session.test(r.key)).length).toBeGreaterThanOrEqual(1)
    const get = () => u.srcProxy.log().find((r) => r.key === u.layerGet)
    for (const t0 = Date.now(); !get()?.ended && Date.now() - t0 < 5000;) await new Promise((r) => setTimeout(r, 20))
    expect(get()?.ended, 'the download opened beside the refused session').toBe('aborted')
  })
})

describe('pushing manifests', () => {
  const relocate = async (host: string) => {
    const planRoots = roots.map(({dstRepository, ...r}) => ({...r, dst: {registry: host, repository: dstRepository}}))
    const plan = await planImages(registrySource(client), planRoots)
    return executePlan(plan, registrySource(client), registrySink(client, host), {largestFirst: true})
  }
  const manifestPuts = (proxy: FaultProxy) => proxy.log().filter((r) => /^PUT \/v2\/.+\/manifests\//.test(r.key))

  it('pushes a manifest again when the registry calls a blob this run placed missing, once its blobs answer a HEAD', async () => {
    const {host, proxy} = await destination('dst-blob-unknown-once', false)
    proxy.set([{match: /^PUT \/v2\/.+\/manifests\//, status: 400, code: 'MANIFEST_BLOB_UNKNOWN', times: 1}])
    const summary = await relocate(host)
    expect(summary.manifests.pushed).toBe(images.length)
    const puts = manifestPuts(proxy)
    const refused = puts.find((r) => r.fault)!
    // the refused manifest was asked about its blobs, then pushed again
    const after = proxy.log().filter((r) => r.at >= refused.at && !r.fault)
    expect(after.some((r) => r.key.startsWith('HEAD') && r.key.includes('/blobs/'))).toBe(true)
    expect(puts.filter((r) => r.key === refused.key)).toHaveLength(2)
    for (const r of roots) {
      const got = await client.getManifest({registry: host, repository: r.dstRepository}, r.tags[0]!)
      expect(got.digest).toBe(r.digest)
    }
  })

  it('gives up with the registry\'s refusal, naming the manifest, when it keeps refusing', async () => {
    const {host, proxy} = await destination('dst-blob-unknown-always', false)
    proxy.set([{match: /^PUT \/v2\/.+\/manifests\//, status: 400, code: 'MANIFEST_BLOB_UNKNOWN'}])
    await expect(relocate(host)).rejects.toThrow(/rejected .*a blob or manifest it references is missing/)
    const counts = new Map<string, number>()
    for (const r of manifestPuts(proxy)) counts.set(r.key, (counts.get(r.key) ?? 0) + 1)
    // the first push and three more, never more
    expect(Math.max(...counts.values())).toBe(4)
  })
})
