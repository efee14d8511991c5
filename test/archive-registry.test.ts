/**
 * The air gap end to end against real registries on loopback (Debian's docker-registry): a source
 * registry with htpasswd auth holding the sample platform v1 and v2, archives written from it,
 * imported into other registries with the source stopped, deltas, damage, resume, split parts,
 * and skopeo on both sides of the format.
 */
import {execFile} from 'node:child_process'
import {createHash} from 'node:crypto'
import {copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {relocateFromArchive, relocateFromOciLayout, relocateToArchive} from '../src/archive/actions.js'
import {openArchive} from '../src/archive/reader.js'
import {blobMember} from '../src/archive/toc.js'
import {verifyArchive} from '../src/archive/verify.js'
import {bundleImages, loadBundle, serializeBundle} from '../src/bundle/index.js'
import type {Bundle, LoadedBundle} from '../src/bundle/types.js'
import {formatError} from '../src/errors.js'
import {generateSample, writeBundleDir, type SampleResult} from '../src/imagegen/index.js'
import {poolCounts} from '../src/oci/buffer-pool.js'
import {createRegistryClient, type OciClient} from '../src/oci/client.js'
import {parseReference, repoOf} from '../src/oci/reference.js'
import {attachReferrer} from '../src/oci/referrers.js'
import {isLoopbackRegistry} from '../src/oci/transport.js'
import {MediaTypes, type ImageIndex, type ImageManifest} from '../src/oci/types.js'
import type {ProgressEvent} from '../src/progress/events.js'
import {startGgcrRegistry, type GgcrRegistry} from '../src/sandbox/ggcr-registry.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'

const run = promisify(execFile)
const PASSWORD = 'canary-Pw-7f3a9c2e41'
const USER = 'kpi-source'
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const failure = (p: Promise<unknown>): Promise<string> => p.then(() => 'no error', (e) => formatError(e))

let dir: string
let src: Registry
let dst: Registry
const registries: Registry[] = []
const ggcrs: GgcrRegistry[] = []
let client: OciClient
let v1: SampleResult
let v2: SampleResult
let b1: LoadedBundle
let b2: LoadedBundle
let full1: string
let lock1: Bundle
let referrerDigest: string

const newRegistry = async (name: string) => {
  const r = await startRegistry({runDir: dir, name})
  registries.push(r)
  return r
}

/** go-containerregistry's registry: unlike distribution it accepts an image manifest whose blobs are missing */
const newGgcr = async (name: string) => {
  const r = await startGgcrRegistry({runDir: dir, name})
  ggcrs.push(r)
  return r
}

/**
 * Of `digests` (manifests of one image), those present in `repo` name only what is there too:
 * an index its children, an image manifest its config and layers. Returns how many are present.
 */
async function presentAreComplete(repo: {registry: string; repository: string}, digests: string[]): Promise<number> {
  let present = 0
  for (const d of digests) {
    if (!(await client.headManifest(repo, d))) continue
    present++
    const json = JSON.parse((await client.getManifest(repo, d)).bytes.toString()) as ImageIndex & ImageManifest
    if (Array.isArray(json.manifests)) {
      for (const c of json.manifests) expect(await client.headManifest(repo, c.digest), `${repo.repository}: index ${d} without child ${c.digest}`).toBeDefined()
    } else {
      for (const b of [json.config, ...json.layers]) expect(await client.hasBlob(repo, b.digest), `${repo.repository}: manifest ${d} without blob ${b.digest}`).toBe(true)
    }
  }
  return present
}

/** every manifest reachable from a reference at a registry, fetched: digest -> bytes */
async function fetchTree(ref: string): Promise<Map<string, Buffer>> {
  const parsed = parseReference(ref)
  const repo = repoOf(parsed)
  const out = new Map<string, Buffer>()
  const walk = async (digest: string) => {
    const m = await client.getManifest(repo, digest)
    expect(`sha256:${sha(m.bytes)}`).toBe(digest)
    out.set(digest, m.bytes)
    const json = JSON.parse(m.bytes.toString()) as ImageIndex & ImageManifest
    if (Array.isArray(json.manifests)) for (const c of json.manifests) await walk(c.digest)
    else for (const b of [json.config, ...json.layers]) expect(await client.hasBlob(repo, b.digest), `${ref} blob ${b.digest}`).toBe(true)
  }
  await walk(parsed.digest!)
  return out
}

/** HEAD of a manifest by digest: does the destination have it */
const hasManifest = async (ref: string) => {
  const p = parseReference(ref)
  return (await client.headManifest(repoOf(p), p.digest!)) !== undefined
}

const catalog = async (r: Registry): Promise<string[]> => {
  const res = await fetch(`${r.url}/v2/_catalog`)
  return ((await res.json()) as {repositories: string[]}).repositories
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-archive-reg-'))
  const layout = join(dir, 'layout')
  v1 = await generateSample({version: 'v1', layoutDir: layout})
  v2 = await generateSample({version: 'v2', layoutDir: layout})
  src = await startRegistry({runDir: dir, name: 'source', auth: {username: USER, password: PASSWORD}})
  registries.push(src)
  dst = await newRegistry('dest')
  client = createRegistryClient({
    plainHttp: isLoopbackRegistry,
    credentials: async (reg) => (reg === src.host ? {username: USER, password: PASSWORD, source: 'test'} : undefined),
  })
  // the sample platform into the source registry, through kpi's OCI layout source
  for (const [v, name] of [[v1, 'v1'], [v2, 'v2']] as const) {
    const bundle = await loadBundle(await writeBundleDir(v.bundle(src.host, 'sample'), join(dir, `bundle-${name}`)))
    await relocateFromOciLayout({bundle, dir: layout, toRepo: src.host, client})
    if (name === 'v1') b1 = bundle
    else b2 = bundle
  }
  // a signature on the controller image: referrers travel with their image
  const controller = parseReference(b1.bundle.kpack.images.controller)
  const sig = Buffer.from('signature of the controller')
  const emptyConfig = Buffer.from('{}')
  await client.putBlob(repoOf(controller), `sha256:${sha(sig)}`, sig.length, () => Readable.from([sig]))
  await client.putBlob(repoOf(controller), `sha256:${sha(emptyConfig)}`, 2, () => Readable.from([emptyConfig]))
  const subject = await client.headManifest(repoOf(controller), controller.digest!)
  const referrer = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MediaTypes.ociManifest, artifactType: 'application/vnd.dev.kpi.signature',
    config: {mediaType: MediaTypes.ociEmpty, digest: `sha256:${sha(emptyConfig)}`, size: 2},
    layers: [{mediaType: 'application/vnd.dev.kpi.signature.v1', digest: `sha256:${sha(sig)}`, size: sig.length}],
    subject: {mediaType: subject!.mediaType, digest: controller.digest, size: subject!.size},
  }))
  referrerDigest = await attachReferrer(client, repoOf(controller), referrer, MediaTypes.ociManifest)
  full1 = join(dir, 'v1.tar')
  await relocateToArchive({bundle: b1, file: full1, client})
}, 300_000)

afterAll(async () => {
  await client?.close()
  await Promise.all([...registries, ...ggcrs].map((r) => r.stop()))
  await rm(dir, {recursive: true, force: true})
})

describe('registry -> archive -> registry', () => {
  it('imports with the source registry stopped: every lock digest resolves, manifests byte-identical, indexes complete, referrers kept', async () => {
    await src.stop()
    try {
      const events: ProgressEvent[] = []
      const r = await relocateFromArchive({file: full1, toRepo: `${dst.host}/air`, client, onEvent: (e) => events.push(e)})
      lock1 = r.lock
      expect(r.summary.manifests.pushed).toBeGreaterThan(0)
      const src1 = bundleImages(b1.bundle)
      const dst1 = bundleImages(r.lock)
      expect(dst1.map((i) => i.path)).toEqual(src1.map((i) => i.path))
      for (const [i, img] of dst1.entries()) {
        const from = parseReference(src1[i]!.ref)
        expect(img.ref).toBe(`${dst.host}/air/${from.repository}@${from.digest}`)
        expect(r.lock.origins?.[img.ref]).toBe(src1[i]!.ref)
        const tree = await fetchTree(img.ref)
        // byte-identical to what the generator wrote
        for (const [d, bytes] of tree) expect(bytes.equals(await readFile(join(dir, 'layout', 'blobs', 'sha256', d.slice(7)))), `${img.path} ${d}`).toBe(true)
      }
      const run = dst1.find((i) => i.path === 'stacks[0].runImage')!
      const index = JSON.parse((await fetchTree(run.ref)).get(parseReference(run.ref).digest!)!.toString()) as ImageIndex
      expect(index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`).sort()).toEqual(['linux/amd64', 'linux/arm64'])
      const controller = parseReference(dst1.find((i) => i.path === 'kpack.images.controller')!.ref)
      expect((await client.referrers(repoOf(controller), controller.digest!)).map((d) => d.digest)).toEqual([referrerDigest])
    } finally {
      await src.restart()
    }
  })

  it('carries no credential of the source registry', async () => {
    const bytes = await readFile(full1)
    for (const secret of [PASSWORD, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')]) expect(bytes.includes(secret), secret).toBe(false)
  })

  it('writes the same bytes on every run, and a run interrupted half-way resumes to them', async () => {
    const again = join(dir, 'again.tar')
    await relocateToArchive({bundle: b1, file: again, client})
    const want = sha(await readFile(full1))
    expect(sha(await readFile(again))).toBe(want)
    const file = join(dir, 'interrupted.tar')
    const ctl = new AbortController()
    let n = 0
    await expect(relocateToArchive({bundle: b1, file, client, signal: ctl.signal, onEvent: (e) => {
      if (e.type === 'blob' && e.action === 'copied' && ++n === 9) ctl.abort()
    }})).rejects.toThrow(/interrupted/)
    await expect(stat(file)).rejects.toThrow()
    const r = await relocateToArchive({bundle: b1, file, client, resume: true})
    // blobs are written side by side: every blob reported copied is kept, and any that finished after the abort
    expect(r.archive.resumed.blobs).toBeGreaterThanOrEqual(n)
    expect(r.summary.blobs.copied).toBe(r.toc.blobs.length - r.archive.resumed.blobs)
    expect(sha(await readFile(file))).toBe(want)
  })

  it('skopeo reads an image of the archive with the same digest', async () => {
    const a = await openArchive(full1)
    const images = a.toc.images.filter((i) => ['stacks[0].runImage', 'kpack.images.controller'].includes(i.path))
    await a.close()
    expect(images).toHaveLength(2)
    for (const img of images) {
      const {stdout} = await run('skopeo', ['inspect', '--raw', `oci-archive:${full1}:${img.name}`], {encoding: 'buffer', maxBuffer: 1 << 24})
      expect(`sha256:${sha(stdout as unknown as Buffer)}`).toBe(img.digest)
    }
  })
})

describe('damage', () => {
  it('writes the archive from the source over HTTPS, reading into pooled buffers: every blob verifies, the same as from plain HTTP', async () => {
    // the source's storage, served over TLS: a big layer comes as Range windows through TLS reads
    // paused and resumed by the archive writer
    const secure = await startRegistry({runDir: dir, name: 'source-tls', auth: {username: USER, password: PASSWORD}, tls: true, dataDir: src.dataDir})
    registries.push(secure)
    const tlsClient = createRegistryClient({
      plainHttp: (r) => r !== secure.host && isLoopbackRegistry(r),
      caCerts: [secure.caPem!],
      credentials: async (reg) => (reg === secure.host ? {username: USER, password: PASSWORD, source: 'test'} : undefined),
    })
    try {
      const bundle = await loadBundle(await writeBundleDir(v1.bundle(secure.host, 'sample'), join(dir, 'bundle-v1-tls')))
      const file = join(dir, 'v1-tls.tar')
      const before = poolCounts()
      await relocateToArchive({bundle, file, client: tlsClient})
      const after = poolCounts()
      expect(after.reused - before.reused, 'read buffers reused').toBeGreaterThan(0)
      expect((await verifyArchive(file)).ok).toBe(true)
      const [plain, tls] = [await openArchive(full1), await openArchive(file)]
      try {
        const blobs = (a: typeof plain) => [...a.members.keys()].filter((k) => k.startsWith('blobs/')).sort()
        expect(blobs(plain).length).toBeGreaterThan(20)
        expect(blobs(tls)).toEqual(blobs(plain))
      } finally {
        await Promise.all([plain.close(), tls.close()])
      }
    } finally {
      await tlsClient.close()
    }
  })

  it('a flipped byte in a layer: verify names the blob and image; the import pushes no manifest of the affected images', async () => {
    const file = join(dir, 'flipped.tar')
    await copyFile(full1, file)
    const a = await openArchive(file)
    // a layer only the run image uses
    const runImg = a.toc.images.find((i) => i.path === 'stacks[0].runImage')!
    const only = runImg.blobs.filter((b) => b.size > 10_000 && a.toc.images.every((i) => i === runImg || !i.blobs.some((x) => x.digest === b.digest)))
    const layer = only[0]!
    const m = a.members.get(blobMember(layer.digest))!
    await a.close()
    const f = await open(file, 'r+')
    const byte = Buffer.alloc(1)
    await f.read(byte, 0, 1, m.offset + Math.floor(m.size / 2))
    byte[0] = byte[0]! ^ 0x40
    await f.write(byte, 0, 1, m.offset + Math.floor(m.size / 2))
    await f.close()

    const v = await verifyArchive(file)
    expect(v.ok).toBe(false)
    expect(v.problems.map((p) => [p.digest, p.images])).toEqual([[layer.digest, ['stacks[0].runImage']]])

    // Into distribution, and into the ggcr registry, which would take the run image's platform
    // manifest without the damaged layer: there only kpi's ordering keeps it out, so this test fails
    // if kpi pushed a manifest before its blobs were verified and uploaded.
    const targets = [(await newRegistry('damaged')).host, (await newGgcr('damaged-ggcr')).host]
    await src.stop()
    try {
      for (const host of targets) {
        // one upload at a time, in the archive's order: the images before the run image are in
        // before its damaged layer is refused, whatever the machine's timing (with 8 side by side,
        // the refusal could stop the run before any manifest was pushed, proving nothing below)
        const msg = await failure(relocateFromArchive({file, toRepo: `${host}/air`, client, uploads: 1}))
        // the registry checks the digest as the upload closes (kpi does not hash it a second time)
        expect(msg).toContain(layer.digest)
        expect(msg).toMatch(/does not match its digest/)
        expect(msg).toContain(`(read from archive ${file})`)
        expect(msg).toContain(`kpi tar verify ${file}`)
      }
    } finally {
      await src.restart()
    }
    const layersOf = async (d: string) => {
      const json = JSON.parse((await readFile(join(dir, 'layout', 'blobs', 'sha256', d.slice(7)))).toString()) as ImageManifest
      return (json.layers ?? []).map((l) => l.digest)
    }
    // the platform manifest holding the layer, and the index above it
    const holding: string[] = []
    for (const d of runImg.manifests.filter((x) => x !== runImg.digest)) if ((await layersOf(d)).includes(layer.digest)) holding.push(d)
    expect(holding).toHaveLength(1)
    const a2 = await openArchive(file)
    const others = a2.toc.images.filter((i) => i.path !== runImg.path)
    await a2.close()
    for (const host of targets) {
      const runRepo = {registry: host, repository: `air/${parseReference(runImg.ref).repository}`}
      for (const d of [runImg.digest, ...holding]) expect(await client.headManifest(runRepo, d), `${host}: ${d} of stacks[0].runImage`).toBeUndefined()
      // the run image's other platform may be there, complete
      await presentAreComplete(runRepo, runImg.manifests)
      // the unaffected images: what is there is complete, and they got pushed (so the absence above
      // is kpi holding the affected manifests back, not an import that pushed nothing)
      let complete = 0
      for (const img of others) {
        const repo = {registry: host, repository: `air/${parseReference(img.ref).repository}`}
        await presentAreComplete(repo, img.manifests)
        if (await client.headManifest(repo, img.digest)) complete++
      }
      expect(complete, `${host}: unaffected images imported`).toBeGreaterThan(0)
    }
  })

  it('a crafted archive is refused before anything is pushed', async () => {
    const file = join(dir, 'truncated.tar')
    await copyFile(full1, file)
    const f = await open(file, 'r+')
    await f.truncate(Math.floor((await f.stat()).size * 0.6))
    await f.close()
    const target = await newRegistry('crafted')
    expect(await failure(relocateFromArchive({file, toRepo: `${target.host}/air`, client}))).toMatch(/truncated/)
    expect(await catalog(target)).toEqual([])
  })
})

describe('delta', () => {
  it('holds only the changed blobs, imports into a registry that has the old version, and into an empty one stops before any manifest naming what is missing', async () => {
    // the base given as the lock of the earlier import: its origins lead back to the source
    const lockDir = join(dir, 'lock1')
    await mkdir(lockDir, {recursive: true})
    await writeFile(join(lockDir, 'bundle.yaml'), serializeBundle(lock1))
    const since = await loadBundle(lockDir)
    const delta = join(dir, 'delta.tar')
    const full2 = join(dir, 'v2.tar')
    const d = await relocateToArchive({bundle: b2, file: delta, client, since})
    const f = await relocateToArchive({bundle: b2, file: full2, client})
    const v1Blobs = new Set((await openArchive(full1).then(async (o) => [o.toc.blobs.map((b) => b.digest), await o.close()][0] as string[])))
    const changed = f.toc.blobs.filter((b) => !v1Blobs.has(b.digest))
    const changedBytes = changed.reduce((s, b) => s + b.size, 0)
    expect(changed.length).toBeGreaterThan(0)
    expect(d.toc.blobs.map((b) => b.digest).sort()).toEqual(changed.map((b) => b.digest).sort())
    // besides the changed blobs: each image's manifest and config, its TOC entry, tar headers
    expect(d.archive.bytes).toBeLessThanOrEqual(changedBytes * 1.01 + 6 * 1024 * bundleImages(b2.bundle).length)
    expect(d.archive.bytes).toBeLessThan(f.archive.bytes / 3)
    expect(d.toc.since).toEqual({name: b1.bundle.metadata.name, version: b1.bundle.metadata.version})

    await src.stop()
    try {
      // into the registry holding v1
      const r = await relocateFromArchive({file: delta, toRepo: `${dst.host}/air`, client})
      for (const img of bundleImages(r.lock)) await fetchTree(img.ref)
      // into an empty registry: stops before pushing any manifest, naming what is missing
      const empty = await newRegistry('empty')
      const msg = await failure(relocateFromArchive({file: delta, toRepo: `${empty.host}/air`, client}))
      expect(msg).toMatch(/delta archive .* lacks \d+ blobs? of .* that .* does not have: sha256:[0-9a-f]{64} \(/)
      expect(msg).toContain(d.toc.external[0]!.digest.slice(0, 20))
      expect(await catalog(empty)).toEqual([])
    } finally {
      await src.restart()
    }
  })
})

describe('split archive', () => {
  it('five parts relocate like the whole archive; a missing part is named', async () => {
    const base = join(dir, 'split.tar')
    const size = (await stat(full1)).size
    const w = await relocateToArchive({bundle: b1, file: base, client, splitSize: Math.ceil(size / 5)})
    expect(w.archive.files).toHaveLength(5)
    const fresh = await newRegistry('split-fresh')
    const target = await newRegistry('split')
    await src.stop()
    try {
      // into an empty registry, so every blob must be read from the parts and cross the wire
      const r = await relocateFromArchive({file: `${base}.part001`, toRepo: `${fresh.host}/air`, client})
      expect(r.summary.bytesMoved).toBe(w.toc.uniqueBytes)
      expect(r.summary.bytesMoved).toBe(r.summary.uniqueBytes)
      expect(r.summary.blobs.copied).toBe(w.toc.blobs.length)
      // the same lock as the import of the whole archive, but for the registry's address
      const moved = (ref: string) => ref.replace(`${dst.host}/air/`, `${fresh.host}/air/`)
      expect(bundleImages(r.lock)).toEqual(bundleImages(lock1).map((i) => ({...i, ref: moved(i.ref)})))
      expect(r.lock.origins).toEqual(Object.fromEntries(Object.entries(lock1.origins ?? {}).map(([k, v]) => [moved(k), v])))
      for (const img of bundleImages(r.lock)) await fetchTree(img.ref)
      await rm(`${base}.part004`)
      expect(await failure(relocateFromArchive({file: base, toRepo: `${target.host}/air`, client}))).toMatch(/split\.tar\.part004 is missing/)
      expect(await catalog(target)).toEqual([])
    } finally {
      await src.restart()
    }
  })
})

describe('OCI layout written by skopeo', () => {
  it('kpi relocates a bundle from it', async () => {
    const layout = join(dir, 'skopeo-layout')
    for (const img of bundleImages(b1.bundle)) {
      const p = parseReference(img.ref)
      await run('skopeo', ['copy', '--all', '--quiet', '--src-tls-verify=false', '--src-creds', `${USER}:${PASSWORD}`,
        `docker://${p.registry}/${p.repository}@${p.digest}`, `oci:${layout}:${p.repository.replace(/\//g, '-')}`])
    }
    const target = await newRegistry('fromlayout')
    const r = await relocateFromOciLayout({bundle: b1, dir: layout, toRepo: `${target.host}/fromoci`, client})
    for (const img of bundleImages(r.lock)) {
      expect(img.ref).toMatch(new RegExp(`^${target.host}/fromoci/`))
      await fetchTree(img.ref)
    }
  })
})
