/**
 * The OCI 1.1 referrers API against a real registry that serves it (go-containerregistry's
 * pkg/registry, tools/ggcr-registry), beside distribution 2.8 which does not: signatures cross
 * between the two with `kpi relocate` (registry to registry both ways, and through an archive),
 * listed by `GET /v2/<repo>/referrers/<digest>` where the API exists and by the `sha256-<hex>`
 * fallback tag where it does not, every manifest byte-identical.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {bundleImages} from '../src/bundle/images.js'
import {loadBundle} from '../src/bundle/load.js'
import type {Bundle} from '../src/bundle/types.js'
import {createRegistryClient, referrersTag, type OciClient} from '../src/oci/index.js'
import {sha256Digest} from '../src/oci/digest.js'
import {parseReference, repoOf} from '../src/oci/reference.js'
import {attachReferrer} from '../src/oci/referrers.js'
import {MediaTypes, type Descriptor, type ImageIndex, type ImageManifest, type Repo} from '../src/oci/types.js'
import {startGgcrRegistry, type GgcrRegistry} from '../src/sandbox/ggcr-registry.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {signature} from './helpers/images.js'
import {kpi} from './helpers/cli.js'

const SIG_TYPE = 'application/vnd.dev.kpi.signature.v1'

let work: string
let sb: Sandbox
let gg: GgcrRegistry
/** plain HTTP to the public distribution registry and to the ggcr registry */
let plain: Set<string>
const clients: OciClient[] = []
/** a client with nothing cached: each knows about the referrers API only what it probed itself */
const freshClient = (): OciClient => {
  const c = createRegistryClient({plainHttp: (r) => plain.has(r)})
  clients.push(c)
  return c
}

/** relocated lock with every reference in the ggcr registry */
let ggLock: Bundle
const sigs: Array<{digest: string; bytes: Buffer; subjectPath: string}> = []

const image = (b: Bundle, path: string) => {
  const img = bundleImages(b).find((i) => i.path === path)
  if (!img) throw new Error(`no ${path} in the bundle`)
  const p = parseReference(img.ref)
  return {repo: repoOf(p), digest: p.digest!}
}

/** Every manifest reachable from `digest` (index children and referrers followed), checked complete: digest -> bytes. */
async function tree(c: OciClient, repo: Repo, digest: string, out = new Map<string, Buffer>()): Promise<Map<string, Buffer>> {
  if (out.has(digest)) return out
  const m = await c.getManifest(repo, digest)
  expect(sha256Digest(m.bytes)).toBe(digest)
  out.set(digest, m.bytes)
  const json = JSON.parse(m.bytes.toString('utf8')) as ImageIndex & ImageManifest
  if (Array.isArray(json.manifests)) {
    for (const d of json.manifests) await tree(c, repo, d.digest, out)
  } else {
    for (const b of [json.config, ...json.layers]) expect(await c.hasBlob(repo, b.digest), `${repo.repository} blob ${b.digest}`).toBe(true)
  }
  for (const r of await c.referrers(repo, digest)) await tree(c, repo, r.digest, out)
  return out
}

/** Every image of `to` has the same manifests, byte for byte, as its counterpart in `from`, referrers included. */
async function expectSameImages(from: Bundle, to: Bundle): Promise<number> {
  const c = freshClient()
  const a = bundleImages(from)
  const b = bundleImages(to)
  expect(b.map((i) => i.path)).toEqual(a.map((i) => i.path))
  let manifests = 0
  for (const [i, img] of b.entries()) {
    const src = parseReference(a[i]!.ref)
    const dst = parseReference(img.ref)
    expect(dst.digest).toBe(src.digest)
    const x = await tree(c, repoOf(src), src.digest!)
    const y = await tree(c, repoOf(dst), dst.digest!)
    expect([...y.keys()].sort(), img.path).toEqual([...x.keys()].sort())
    for (const [d, bytes] of x) expect(Buffer.compare(y.get(d)!, bytes), `${img.path} ${d}`).toBe(0)
    manifests += y.size
  }
  return manifests
}

/** The fallback tags (`sha256-<hex>`) in the repositories of a bundle. */
async function fallbackTags(b: Bundle): Promise<string[]> {
  const c = freshClient()
  const out: string[] = []
  for (const img of bundleImages(b)) {
    for (const t of await c.listTags(repoOf(parseReference(img.ref)))) if (/^sha256-[0-9a-f]{64}$/.test(t)) out.push(t)
  }
  return out
}

/** GET /v2/<repo>/referrers/<digest> as a plain HTTP request, not through kpi's client. */
async function rawReferrers(r: {url: string}, repo: Repo, digest: string): Promise<{status: number; type: string | null; manifests: Descriptor[]}> {
  const res = await fetch(`${r.url}/v2/${repo.repository}/referrers/${digest}`, {headers: {accept: MediaTypes.ociIndex}})
  const text = await res.text()
  const manifests = res.status === 200 ? (JSON.parse(text) as ImageIndex).manifests : []
  return {status: res.status, type: res.headers.get('content-type'), manifests}
}

const lockOf = async (file: string): Promise<Bundle> => (await loadBundle(file)).bundle

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-referrers-api-'))
  ;[sb, gg] = await Promise.all([
    startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']}),
    startGgcrRegistry({runDir: join(work, 'ggcr')}),
  ])
  plain = new Set([sb.public.host, gg.host])
})

afterAll(async () => {
  for (const c of clients) await c.close()
  await gg?.stop()
  await sb?.stop()
  if (work) await rm(work, {recursive: true, force: true})
})

describe('referrers API (ggcr registry) and fallback tag (distribution 2.8)', () => {
  it('distribution -> ggcr: a signature found by fallback tag at the source is listed by the referrers API at the destination, no fallback tag written', async () => {
    const c = freshClient()
    const ctrl = image(sb.bundle.v1!, 'kpack.images.controller')
    const bytes = await signature(c, ctrl.repo, ctrl.digest, 'signed at distribution', SIG_TYPE)
    const digest = await attachReferrer(c, ctrl.repo, bytes, MediaTypes.ociManifest)
    sigs.push({digest, bytes, subjectPath: 'kpack.images.controller'})
    // the source holds it the only way distribution can: under the fallback tag
    expect(await c.listTags(ctrl.repo)).toContain(referrersTag(ctrl.digest))

    const lockFile = join(work, 'gg-lock.yaml')
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${gg.host}/build-service`, '--lock-output', lockFile, '--plain-http', gg.host, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    ggLock = await lockOf(lockFile)
    expect(bundleImages(ggLock).every((i) => i.ref.startsWith(`${gg.host}/build-service/`))).toBe(true)

    const at = image(ggLock, 'kpack.images.controller')
    const viaClient = await freshClient().referrers(at.repo, at.digest)
    expect(viaClient.map((d) => d.digest)).toEqual([digest])
    const raw = await rawReferrers(gg, at.repo, at.digest)
    expect(raw.status).toBe(200)
    expect(raw.type).toBe(MediaTypes.ociIndex)
    expect(raw.manifests.map((d) => d.digest)).toEqual([digest])
    expect(Buffer.compare((await c.getManifest(at.repo, digest)).bytes, bytes)).toBe(0)

    // the API made the fallback tag needless: kpi wrote none
    expect(await fallbackTags(ggLock)).toEqual([])
    expect(await c.headManifest(at.repo, referrersTag(at.digest))).toBeUndefined()
    expect(await expectSameImages(sb.bundle.v1!, ggLock)).toBeGreaterThan(12)
  })

  it('referrersApi() is true for the ggcr registry and false for distribution; an unknown ggcr repository decides nothing', async () => {
    const ctrlAtGg = image(ggLock, 'kpack.images.controller').repo
    expect(await freshClient().referrersApi(image(sb.bundle.v1!, 'kpack.images.controller').repo)).toBe(false)
    expect(await freshClient().referrersApi(ctrlAtGg)).toBe(true)

    // ggcr answers 404 NAME_UNKNOWN for a repository it has never seen; that must not be taken as
    // "no referrers API" for the whole registry
    const c = freshClient()
    const unknown = {registry: gg.host, repository: 'nobody/here'}
    expect((await rawReferrers(gg, unknown, sha256Digest(Buffer.from('x')))).status).toBe(404)
    expect(await c.referrers(unknown, sha256Digest(Buffer.from('x')))).toEqual([])
    expect(await c.referrersApi(unknown)).toBe(false)
    expect(await c.referrersApi(ctrlAtGg)).toBe(true)
  })

  it('ggcr -> distribution: a signature attached through the referrers API (no fallback tag) arrives under the fallback tag', async () => {
    const c = freshClient()
    const hook = image(ggLock, 'kpack.images.webhook')
    const bytes = await signature(c, hook.repo, hook.digest, 'signed at ggcr', SIG_TYPE)
    const digest = await attachReferrer(c, hook.repo, bytes, MediaTypes.ociManifest)
    sigs.push({digest, bytes, subjectPath: 'kpack.images.webhook'})
    // attachReferrer left the index to the registry
    expect(await c.listTags(hook.repo)).not.toContain(referrersTag(hook.digest))
    expect((await rawReferrers(gg, hook.repo, hook.digest)).manifests.map((d) => d.digest)).toEqual([digest])

    const lockFile = join(work, 'back-lock.yaml')
    const r = await kpi(['relocate', '-b', join(work, 'gg-lock.yaml'), '--to-repo', `${sb.public.host}/back`, '--lock-output', lockFile, '--plain-http', gg.host, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const back = await lockOf(lockFile)

    const d = freshClient()
    for (const s of sigs) {
      const at = image(back, s.subjectPath)
      expect((await d.referrers(at.repo, at.digest)).map((x) => x.digest), s.subjectPath).toEqual([s.digest])
      expect(await d.listTags(at.repo)).toContain(referrersTag(at.digest))
      // the fallback index, read as the raw manifest distribution stores under the tag
      const res = await fetch(`${sb.public.url}/v2/${at.repo.repository}/manifests/${referrersTag(at.digest)}`, {headers: {accept: MediaTypes.ociIndex}})
      expect(res.status).toBe(200)
      const index = (await res.json()) as ImageIndex
      expect(index.manifests).toEqual([expect.objectContaining({digest: s.digest, artifactType: SIG_TYPE, mediaType: MediaTypes.ociManifest, size: s.bytes.length})])
      expect(Buffer.compare((await d.getManifest(at.repo, s.digest)).bytes, s.bytes)).toBe(0)
    }
    // distribution has no API to list them: the client's probe says so
    expect(await d.referrersApi(image(back, 'kpack.images.webhook').repo)).toBe(false)
    expect(await expectSameImages(ggLock, back)).toBeGreaterThan(12)
  })

  it('ggcr accepts an image manifest whose blobs are missing (distribution refuses it); an index still needs its children', async () => {
    const c = freshClient()
    const missing = sha256Digest(Buffer.from('a blob nobody pushed'))
    const orphan = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {mediaType: 'application/vnd.oci.image.config.v1+json', digest: missing, size: 20},
      layers: [],
    }))
    const at = {registry: gg.host, repository: 'orphans/app'}
    expect(await c.putManifest(at, sha256Digest(orphan), orphan, MediaTypes.ociManifest)).toBe(sha256Digest(orphan))
    expect(await c.headManifest(at, sha256Digest(orphan))).toBeDefined()
    expect(await c.hasBlob(at, missing)).toBe(false)
    await expect(c.putManifest({registry: sb.public.host, repository: 'orphans/app'}, sha256Digest(orphan), orphan, MediaTypes.ociManifest)).rejects.toThrow()

    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaTypes.ociIndex,
      manifests: [{mediaType: MediaTypes.ociManifest, digest: sha256Digest(Buffer.from('no such manifest')), size: 16}],
    }))
    await expect(c.putManifest(at, sha256Digest(index), index, MediaTypes.ociIndex)).rejects.toThrow()
  })

  it('serves HTTPS from --tls-cert/--tls-key, referrers API included', async () => {
    const tls = await startGgcrRegistry({runDir: join(work, 'ggcr-tls'), name: 'ggcr-tls', tls: true})
    const c = createRegistryClient({caCerts: [tls.caPem!]})
    clients.push(c)
    try {
      expect(tls.url).toBe(`https://${tls.host}`)
      const repo = {registry: tls.host, repository: 'signed/app'}
      const app = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: []}))
      const subject = await c.putManifest(repo, sha256Digest(app), app, MediaTypes.ociIndex)
      const bytes = await signature(c, repo, subject, 'over TLS', SIG_TYPE)
      const digest = await attachReferrer(c, repo, bytes, MediaTypes.ociManifest)
      expect(await c.referrersApi(repo)).toBe(true)
      expect((await c.referrers(repo, subject)).map((d) => d.digest)).toEqual([digest])
      expect(await c.listTags(repo)).toEqual([])
    } finally {
      await tls.stop()
    }
  })

  it('ggcr -> distribution: six referrers of one subject, relocated at once, are all in its fallback tag index (each a read-modify-write of one tag)', async () => {
    const c = freshClient()
    const path = bundleImages(ggLock).map((i) => i.path).find((x) => !sigs.some((s) => s.subjectPath === x))!
    const subject = image(ggLock, path)
    const six: string[] = []
    for (let i = 0; i < 6; i++) {
      const bytes = await signature(c, subject.repo, subject.digest, `signer ${i}`, `${SIG_TYPE}.${i}`)
      six.push(await attachReferrer(c, subject.repo, bytes, MediaTypes.ociManifest))
    }
    const lockFile = join(work, 'many-lock.yaml')
    const r = await kpi(['relocate', '-b', join(work, 'gg-lock.yaml'), '--to-repo', `${sb.public.host}/many`, '--lock-output', lockFile, '--plain-http', gg.host, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const at = image(await lockOf(lockFile), path)
    const res = await fetch(`${sb.public.url}/v2/${at.repo.repository}/manifests/${referrersTag(at.digest)}`, {headers: {accept: MediaTypes.ociIndex}})
    expect(res.status).toBe(200)
    expect(((await res.json()) as ImageIndex).manifests.map((d) => d.digest).sort()).toEqual([...six].sort())
  })

  it('distribution -> ggcr: a referrer deleted at the source that its fallback tag still names is left out with a warning; the one still there is copied', async () => {
    const c = freshClient()
    const path = 'lifecycle.image'
    const subject = image(sb.bundle.v1!, path)
    const kept = await attachReferrer(c, subject.repo, await signature(c, subject.repo, subject.digest, 'kept', SIG_TYPE), MediaTypes.ociManifest)
    const gone = await attachReferrer(c, subject.repo, await signature(c, subject.repo, subject.digest, 'deleted later', SIG_TYPE), MediaTypes.ociManifest)
    // deleted as a user deletes a signature: the manifest goes, the fallback index kpi cannot see being written keeps naming it
    const del = await fetch(`${sb.public.url}/v2/${subject.repo.repository}/manifests/${gone}`, {method: 'DELETE'})
    expect(del.status).toBe(202)
    expect((await c.referrers(subject.repo, subject.digest)).map((d) => d.digest).sort()).toEqual([kept, gone].sort())

    const lockFile = join(work, 'stale-lock.yaml')
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${gg.host}/stale`, '--lock-output', lockFile, '--plain-http', gg.host], sb.env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(`warning: referrer ${gone} of `)
    expect(r.stderr).toContain(`is listed for it but ${subject.repo.registry}/${subject.repo.repository} does not have it (a stale entry of its referrers list): not copied`)
    const at = image(await lockOf(lockFile), path)
    expect((await freshClient().referrers(at.repo, at.digest)).map((d) => d.digest)).toEqual([kept])
  })

  it('archive round trip: --to-tar from ggcr, --from-tar into distribution (ggcr stopped) keeps both signatures attached', async () => {
    const tar = join(work, 'gg.tar')
    const w = await kpi(['relocate', '-b', join(work, 'gg-lock.yaml'), '--to-tar', tar, '--plain-http', gg.host, '--json'], sb.env)
    expect(w.code, w.stderr).toBe(0)
    // what the archive needs is in it: the import must not reach back to the ggcr registry
    const before = await snapshot(ggLock)
    await gg.stop()

    const lockFile = join(work, 'air-lock.yaml')
    const r = await kpi(['relocate', '--from-tar', tar, '--to-repo', `${sb.public.host}/air`, '--lock-output', lockFile, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const air = await lockOf(lockFile)

    const d = freshClient()
    for (const s of sigs) {
      const at = image(air, s.subjectPath)
      expect((await d.referrers(at.repo, at.digest)).map((x) => x.digest), s.subjectPath).toEqual([s.digest])
      expect(await d.listTags(at.repo)).toContain(referrersTag(at.digest))
    }
    // every manifest byte-identical to what the ggcr registry served
    const after = await snapshot(air)
    expect([...after.keys()]).toEqual([...before.keys()])
    for (const [path, manifests] of before) {
      const got = after.get(path)!
      expect([...got.keys()].sort(), path).toEqual([...manifests.keys()].sort())
      for (const [digest, bytes] of manifests) expect(Buffer.compare(got.get(digest)!, bytes), `${path} ${digest}`).toBe(0)
    }
  })
})

/** path -> (digest -> bytes) of every image of a bundle, referrers included, read now. */
async function snapshot(b: Bundle): Promise<Map<string, Map<string, Buffer>>> {
  const c = freshClient()
  const out = new Map<string, Map<string, Buffer>>()
  for (const img of bundleImages(b)) {
    const p = parseReference(img.ref)
    out.set(img.path, await tree(c, repoOf(p), p.digest!))
  }
  return out
}
