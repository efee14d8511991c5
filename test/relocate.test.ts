/**
 * Registry-to-registry relocation of the sample platform through the CLI, against real
 * distribution registries: the public one (plain) and the air-gapped one (htpasswd + TLS).
 */
import {readFile, writeFile, mkdir} from 'node:fs/promises'
import {Readable} from 'node:stream'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {loadBundle} from '../src/bundle/load.js'
import {KpiError} from '../src/errors.js'
import {bundleImages, mapBundleImages} from '../src/bundle/images.js'
import {createRegistryClient} from '../src/oci/client.js'
import {sha256Digest} from '../src/oci/digest.js'
import {attachReferrer} from '../src/oci/referrers.js'
import {formatReference, parseReference} from '../src/oci/reference.js'
import {MediaTypes, type ImageIndex, type ImageManifest, type RegistryClient, type Repo} from '../src/oci/types.js'
import type {ImageSource} from '../src/relocate/endpoints.js'
import {parseDestination} from '../src/relocate/naming.js'
import {fromRegistry, fromSource, registrySource, toRegistry} from '../src/relocate/registry-endpoints.js'
import {bundleRoots, relocate} from '../src/relocate/relocate.js'
import {startGgcrRegistry, type GgcrRegistry} from '../src/sandbox/ggcr-registry.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi, startKpi} from './helpers/cli.js'
import {assertComplete, refRepo as repoOf, signature, startRegistrySandbox, stopRegistrySandbox} from './helpers/images.js'

let sb: Sandbox
let work: string
let dst: RegistryClient
let src: RegistryClient
let env: Record<string, string>

beforeAll(async () => {
  ;({sb, work, src, dst, env} = await startRegistrySandbox('kpi-relocate-'))
})

afterAll(() => stopRegistrySandbox({sb, src, dst, work}))

describe('kpi relocate registry to registry', () => {
  let lockFile: string

  it('relocates every image of the sample (14 images, a multi-arch index, shared layers) with digests and bytes unchanged', async () => {
    const source = sb.bundle.v1!
    // a signature attached to the controller image travels with it
    const ctrl = repoOf(source.kpack.images.controller)
    const ctrlDigest = parseReference(source.kpack.images.controller).digest!
    const sig = await signature(src, ctrl, ctrlDigest)
    const sigDigest = await attachReferrer(src, ctrl, sig, MediaTypes.ociManifest)

    lockFile = join(work, 'lock.yaml')
    const logFrom = (await readFile(sb.airgap.logFile, 'utf8')).length
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', lockFile, '--ca-cert', sb.caFile, '--json'], env)
    expect(r.code, r.stderr).toBe(0)
    // one question per manifest and one push: a root found missing is not asked about again, and a
    // tagged one is pushed by its tag alone (the registry keeps it under its digest too)
    const manifestRequests = [...(await readFile(sb.airgap.logFile, 'utf8')).slice(logFrom).matchAll(/"(HEAD|PUT) \/v2\/(\S+)\/manifests\/(\S+) HTTP/g)]
      .map(([, method, repo, ref]) => `${method} ${repo} ${ref}`)
    const heads = manifestRequests.filter((l) => l.startsWith('HEAD'))
    expect(heads.length).toBeGreaterThan(0)
    expect(new Set(heads).size).toBe(heads.length)
    const tagPuts = manifestRequests.filter((l) => l.startsWith('PUT') && !l.includes('sha256:'))
    expect(tagPuts.length).toBeGreaterThan(0)
    const digestPuts = new Set(manifestRequests.filter((l) => l.startsWith('PUT') && l.includes('sha256:')).map((l) => l.split(' ')[1]))
    for (const tagPut of tagPuts) {
      const [, repo, tag] = tagPut.split(' ')
      const pushed = await dst.getManifest({registry: sb.airgap.host, repository: repo!}, tag!)
      // the tag names the manifest relocated, which was not pushed again by digest
      expect(manifestRequests).not.toContain(`PUT ${repo} ${pushed.digest}`)
    }
    expect(digestPuts.size).toBeGreaterThan(0)
    const out = JSON.parse(r.stdout) as {summary: {images: number; bytesMoved: number; uniqueBytes: number; blobs: {copied: number}}}
    expect(out.summary.images).toBeGreaterThanOrEqual(14)
    // shared layers crossed once: bytes moved equal the unique bytes (plus the signature's two small blobs)
    expect(out.summary.bytesMoved).toBe(out.summary.uniqueBytes)
    expect(r.stdout + r.stderr).not.toContain(sb.airgap.password!)

    const lock = (await loadBundle(lockFile)).bundle
    expect(lock.kind).toBe('BundleLock')
    const srcImages = bundleImages(source)
    const lockImages = bundleImages(lock)
    expect(lockImages).toHaveLength(srcImages.length)
    let indexes = 0
    for (const [i, img] of lockImages.entries()) {
      expect(img.ref.startsWith(`${sb.airgapPrefix}/`)).toBe(true)
      const from = srcImages[i]!
      expect(lock.origins?.[img.ref]).toBe(from.ref)
      const digest = parseReference(img.ref).digest!
      expect(digest).toBe(parseReference(from.ref).digest)
      const a = await src.getManifest(repoOf(from.ref), digest)
      const b = await dst.getManifest(repoOf(img.ref), digest)
      expect(Buffer.compare(a.bytes, b.bytes)).toBe(0)
      const all = await assertComplete(dst, repoOf(img.ref), digest)
      if (all.length > 1) indexes++
    }
    expect(indexes).toBeGreaterThanOrEqual(1)

    // the signature is at the destination, still attached
    const dctrl = repoOf(lock.kpack.images.controller)
    const refs = await dst.referrers(dctrl, ctrlDigest)
    expect(refs.map((d) => d.digest)).toContain(sigDigest)
    const sigAtDst = await dst.getManifest(dctrl, sigDigest)
    expect(Buffer.compare(sigAtDst.bytes, sig)).toBe(0)
  })

  it('moves 0 blob bytes on a second run, and says so', async () => {
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', join(work, 'lock2.yaml'), '--ca-cert', sb.caFile], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/bytes moved: 0 B/)
    expect(r.stdout).toContain('nothing to move')
    expect(await readFile(join(work, 'lock2.yaml'), 'utf8')).toBe(await readFile(lockFile, 'utf8'))
  })

  it('asks the destination about every root while the source is still being read, once each', async () => {
    // nothing to move: one HEAD per root is all the copy asks of the destination (by its tag, which
    // names it there, for a tagged one; by digest for the others); asked during the plan, they are
    // not one more round of requests after it
    const bundle = sb.bundle.v1!
    const prefix = sb.airgapPrefix.slice(sb.airgap.host.length + 1)
    const head = (ref: string) => `${prefix}/${repoOf(ref).repository}@${parseReference(ref).tag ?? parseReference(ref).digest}`
    const byTag = bundleImages(bundle).filter(({ref}) => parseReference(ref).tag)
    expect(byTag.length).toBeGreaterThan(0)
    const roots = new Set(bundleImages(bundle).map(({ref}) => head(ref)))
    const asked: string[] = []
    const watched: RegistryClient = {...dst, headManifest: (repo, ref) => {
      asked.push(`${repo.repository}@${ref}`)
      return dst.headManifest(repo, ref)
    }}
    const source = registrySource(src)
    // the source's first answer waits (5 s at most) until the destination was asked about every root
    let gate: Promise<number> | undefined
    const held: ImageSource = {...source, getManifest: async (repo, ref) => {
      gate ??= (async () => {
        for (const t0 = Date.now(); new Set(asked).size < roots.size && Date.now() - t0 < 5000;) await new Promise((r) => setTimeout(r, 20))
        return new Set(asked).size
      })()
      await gate
      return source.getManifest(repo, ref)
    }}
    const r = await relocate({from: fromSource(held, bundle), to: toRegistry(watched, sb.airgapPrefix)})
    expect(await gate).toBe(roots.size)
    // each root once (the signature the first test attached is asked about on its own)
    for (const k of roots) expect(asked.filter((a) => a === k), k).toHaveLength(1)
    expect(r.summary.bytesMoved).toBe(0)
    expect(r.summary.manifests.pushed).toBe(0)
  })

  it('reads no image the destination holds under every tag from the source, yet copies a signature attached to it since', async () => {
    const bundle = sb.bundle.v1!
    // signed at the source after the platform was relocated (the first test): only its referrers tell
    const ref = bundle.lifecycle.image
    const repo = repoOf(ref)
    const digest = parseReference(ref).digest!
    const sigDigest = await attachReferrer(src, repo, await signature(src, repo, digest, 'signed later'), MediaTypes.ociManifest)
    const read: string[] = []
    const source = registrySource(src)
    const watched: ImageSource = {...source, getManifest: (r, reference) => {
      read.push(reference)
      return source.getManifest(r, reference)
    }}
    const placed: Array<{digest: string; action: string}> = []
    const r = await relocate({from: fromSource(watched, bundle), to: toRegistry(dst, sb.airgapPrefix), onEvent: (e) => {
      if (e.type === 'blob' && e.action !== 'skipped') placed.push({digest: e.digest, action: e.action})
    }})
    // an index is read (its children may have referrers of their own); no other root is
    const roots = bundleRoots(bundle, parseDestination(sb.airgapPrefix))
    const kinds = await Promise.all(roots.map(async (root) => ({root, index: /index|list/.test((await src.headManifest(root.src, root.digest))!.mediaType)})))
    const images = new Set(kinds.filter((k) => !k.index).map((k) => k.root.digest))
    expect(images.size).toBeGreaterThan(5)
    expect(read.filter((d) => images.has(d))).toEqual([])
    expect(read).toContain(sigDigest)
    expect(r.summary.imagesThere).toBe(images.size)
    // the new signature is the one manifest pushed, its two small blobs all that was placed: its
    // payload copied once; its empty config copied or mounted, whichever repository (the
    // lifecycle's, or the controller's, where the first test's signature put it) the run reaches
    // first (the plan reads them at once). Where the lifecycle's comes first, the controller's is
    // then "mounted" from it too: with mounts answering for HEADs, a mount into a repository that
    // holds the blob already is answered alike, one request and no bytes.
    expect(r.summary.manifests.pushed).toBe(1)
    const sig = JSON.parse((await src.getManifest(repo, sigDigest)).bytes.toString('utf8')) as ImageManifest
    const payload = sig.layers[0]!
    expect(placed.filter((p) => p.digest === payload.digest)).toEqual([{digest: payload.digest, action: 'copied'}])
    const config = placed.filter((p) => p.digest === sig.config.digest)
    expect(config.length, JSON.stringify(placed)).toBeGreaterThanOrEqual(1)
    expect(config.length, JSON.stringify(placed)).toBeLessThanOrEqual(2)
    expect(placed, JSON.stringify(placed)).toHaveLength(1 + config.length)
    expect(r.summary.bytesMoved).toBeLessThanOrEqual(payload.size + sig.config.size)
    const refs = await dst.referrers({registry: sb.airgap.host, repository: r.plan.roots.find((x) => x.digest === digest)!.dst.repository}, digest)
    expect(refs.map((d) => d.digest)).toContain(sigDigest)
    await assertComplete(dst, r.plan.roots.find((x) => x.digest === digest)!.dst, sigDigest)
  })

  it('starts copying an image missing at the destination while the rest of the plan is still read', async () => {
    const bundle = sb.bundle.v1!
    const to = `${sb.airgap.host}/early`
    let uploaded = 0
    const watched: RegistryClient = {...dst, putBlob: async (...args) => {
      const r = await dst.putBlob(...args)
      uploaded++
      return r
    }}
    // the last root's manifest waits (10 s at most) until the destination holds a blob of another image
    const [held] = bundleRoots(bundle, parseDestination(to)).slice(-1)
    const source = registrySource(src)
    let gate: Promise<number> | undefined
    const holding: ImageSource = {...source, getManifest: async (repo, ref) => {
      if (ref === held!.digest) {
        gate ??= (async () => {
          for (const t0 = Date.now(); uploaded === 0 && Date.now() - t0 < 10_000;) await new Promise((r) => setTimeout(r, 20))
          return uploaded
        })()
        await gate
      }
      return source.getManifest(repo, ref)
    }}
    const r = await relocate({from: fromSource(holding, bundle), to: toRegistry(watched, to)})
    expect(await gate).toBeGreaterThan(0)
    expect(r.summary.manifests.skipped).toBe(0)
    expect(r.summary.bytesMoved).toBe(r.summary.uniqueBytes)
    for (const root of r.plan.roots) await assertComplete(dst, root.dst, root.digest)
  })

  it('asks about the large layers of an image no tag of which names it before asking about the image by digest', async () => {
    // the image changed (or is new): its large layers start on the tag's answer, a round trip
    // sooner than on the answer by digest (the patch release's changed layer waited for it)
    const repo = {registry: sb.public.host, repository: 'changed/lifecycle'}
    const big = Buffer.alloc(17 << 20, 'changed layer ')
    const small = Buffer.from('small layer')
    const layers = []
    for (const b of [small, big]) {
      const digest = sha256Digest(b)
      await src.putBlob(repo, digest, b.length, () => Readable.from([b]))
      layers.push({mediaType: MediaTypes.ociLayerGzip, digest, size: b.length})
    }
    const configBytes = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux'}))
    await src.putBlob(repo, sha256Digest(configBytes), configBytes.length, () => Readable.from([configBytes]))
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: {mediaType: MediaTypes.ociConfig, digest: sha256Digest(configBytes), size: configBytes.length}, layers}))
    const digest = await src.putManifest(repo, '1.0', manifest, MediaTypes.ociManifest)
    const bundle = {...sb.bundle.v1!, lifecycle: {image: `${repo.registry}/${repo.repository}:1.0@${digest}`}}
    const asked: string[] = []
    let bigAsked = () => {}
    const bigAskedNow = new Promise<void>((resolve) => {
      bigAsked = resolve
    })
    const watched: RegistryClient = {
      ...dst,
      headManifest: async (r, ref) => {
        if (!r.repository.endsWith('changed/lifecycle')) return dst.headManifest(r, ref)
        asked.push(`manifest ${ref}`)
        // the answer by digest is held until the large layer has been asked about (3 s at most):
        // a layer that waited for that answer is asked about only after it, whatever the load
        if (ref === digest) await Promise.race([bigAskedNow, new Promise((resolve) => setTimeout(resolve, 3000))])
        const there = await dst.headManifest(r, ref)
        asked.push(`answered ${ref}`)
        return there
      },
      hasBlob: (r, d) => {
        if (r.repository.endsWith('changed/lifecycle')) asked.push(`blob ${d}`)
        if (d === layers[1]!.digest) bigAsked()
        return dst.hasBlob(r, d)
      },
    }
    const r = await relocate({from: fromRegistry(src, bundle), to: toRegistry(watched, `${sb.airgap.host}/changed`)})
    const bigAt = asked.indexOf(`blob ${layers[1]!.digest}`)
    expect(asked[0], asked.join('\n')).toBe('manifest 1.0')
    expect(bigAt, asked.join('\n')).toBeGreaterThan(-1)
    expect(bigAt, asked.join('\n')).toBeLessThan(asked.indexOf(`answered ${digest}`))
    await assertComplete(dst, {registry: sb.airgap.host, repository: r.plan.roots.find((x) => x.digest === digest)!.dst.repository}, digest)
    expect(r.summary.bytesMoved).toBe(r.summary.uniqueBytes)
  })

  it('a plan that fails while images are already moving ends those uploads and pushes no manifest', async () => {
    const bundle = sb.bundle.v1!
    const to = `${sb.airgap.host}/early-failed`
    let started = 0
    const watched: RegistryClient = {...dst, putBlob: (...args) => {
      started++
      return dst.putBlob(...args)
    }}
    const roots = bundleRoots(bundle, parseDestination(to))
    const [held] = roots.slice(-1)
    const source = registrySource(src)
    const holding: ImageSource = {...source, getManifest: async (repo, ref) => {
      if (ref === held!.digest) {
        for (const t0 = Date.now(); started === 0 && Date.now() - t0 < 10_000;) await new Promise((r) => setTimeout(r, 20))
        throw new KpiError('not-found', `manifest ${ref} is gone (test)`)
      }
      return source.getManifest(repo, ref)
    }}
    await expect(relocate({from: fromSource(holding, bundle), to: toRegistry(watched, to)})).rejects.toThrow(/is gone \(test\)/)
    expect(started).toBeGreaterThan(0)
    for (const root of roots) expect(await dst.headManifest(root.dst, root.digest), root.path).toBeUndefined()
    // and nothing still writes there: a blob count taken now does not change
    const count = started
    await new Promise((r) => setTimeout(r, 300))
    expect(started).toBe(count)
  })

  it('sets the tags of images already at the destination where they are missing or name another digest, and only those', async () => {
    const bundle = sb.bundle.v1!
    const to = `${sb.airgap.host}/retag`
    const tagged = bundleRoots(bundle, parseDestination(to)).filter((r) => r.tags.length > 0)
    expect(tagged.length).toBeGreaterThan(1)
    const tagAt = async (r: (typeof tagged)[number]) => (await dst.headManifest(r.dst, r.tags[0]!))?.digest
    // the images pushed before by digest alone: every manifest there, no tag
    const untagged = mapBundleImages(bundle, (ref) => formatReference({...parseReference(ref), tag: undefined}))
    await relocate({from: fromRegistry(src, untagged), to: toRegistry(dst, to)})
    expect(await tagAt(tagged[0]!)).toBeUndefined()

    const tagPuts: string[] = []
    const watched: RegistryClient = {...dst, putManifest: (repo, ref, bytes, mediaType) => {
      if (!ref.includes(':') && !ref.startsWith('sha256-')) tagPuts.push(`${repo.repository}:${ref}`)
      return dst.putManifest(repo, ref, bytes, mediaType)
    }}
    const again = async () => {
      tagPuts.length = 0
      const r = await relocate({from: fromRegistry(src, bundle), to: toRegistry(watched, to)})
      expect(r.summary.bytesMoved).toBe(0)
      expect(r.summary.manifests.pushed).toBe(0)
      for (const t of tagged) expect(await tagAt(t), `${t.dst.repository}:${t.tags[0]}`).toBe(t.digest)
    }
    await again()
    expect(tagPuts.sort()).toEqual(tagged.map((t) => `${t.dst.repository}:${t.tags[0]}`).sort())

    // a tag moved at the destination to another manifest of the same content (one annotation more)
    const moved = tagged[0]!
    const m = await dst.getManifest(moved.dst, moved.digest)
    const other = JSON.parse(m.bytes.toString('utf8')) as {annotations?: Record<string, string>}
    other.annotations = {...other.annotations, 'kpi.test/moved': 'true'}
    expect(await dst.putManifest(moved.dst, moved.tags[0]!, Buffer.from(JSON.stringify(other)), m.mediaType)).not.toBe(moved.digest)
    await again()
    // the right tags were left alone
    expect(tagPuts).toEqual([`${moved.dst.repository}:${moved.tags[0]}`])
  })

  it('a registry killed while rewriting link files answers 500 for them: the rerun pushes those again, which repairs them', async () => {
    // distribution rewrites a link in place (truncate, then write): killed in between, the link is
    // left empty, as in the restarted registry of a CI run. Here both kinds are emptied by hand.
    // (the mount test below relocates from what this one leaves: it must be whole again)
    const relocated = (await loadBundle(lockFile)).bundle
    const ref = parseReference(relocated.kpack.images.controller)
    const repo: Repo = {registry: ref.registry, repository: ref.repository}
    const manifest = JSON.parse((await dst.getManifest(repo, ref.digest!)).bytes.toString('utf8')) as ImageManifest
    const config = manifest.config.digest
    const links = join(sb.airgap.dataDir, 'docker/registry/v2/repositories', ref.repository)
    await writeFile(join(links, '_layers/sha256', config.slice('sha256:'.length), 'link'), '')
    await writeFile(join(links, '_manifests/revisions/sha256', ref.digest!.slice('sha256:'.length), 'link'), '')
    // restarted, as it was: a running registry answers a blob's HEAD from what it cached
    await sb.airgap.restart!()
    const probe = createRegistryClient({caCerts: [sb.airgap.caPem!], credentials: async () => ({username: sb.airgap.username!, password: sb.airgap.password!}), retries: 0})
    try {
      await expect(probe.hasBlob(repo, config)).rejects.toThrow(/answered 500/)
      await expect(probe.headManifest(repo, ref.digest!)).rejects.toThrow(/answered 500/)

      const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', join(work, 'lock-relinked.yaml'), '--ca-cert', sb.caFile, '--json'], env)
      expect(r.code, r.stderr).toBe(0)
      const copied = r.stderr.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as {event: {type: string; digest?: string; action?: string}}).event)
        .filter((e) => e.type === 'blob' && e.action === 'copied').map((e) => e.digest)
      expect(copied).toEqual([config])
      expect(await probe.hasBlob(repo, config)).toBe(true)
      expect(await probe.headManifest(repo, ref.digest!)).toBeDefined()
      await assertComplete(dst, repo, ref.digest!)
    } finally {
      await probe.close()
    }
  })

  it('mounts instead of copying between two repositories of one registry', async () => {
    const r = await kpi(['relocate', '-b', lockFile, '--to-repo', `${sb.airgap.host}/team-copy`, '--lock-output', join(work, 'lock3.yaml'), '--ca-cert', sb.caFile, '--json'], env)
    expect(r.code, r.stderr).toBe(0)
    const s = JSON.parse(r.stdout).summary as {bytesMoved: number; blobs: {mounted: number; copied: number}}
    expect(s.bytesMoved).toBe(0)
    expect(s.blobs.copied).toBe(0)
    expect(s.blobs.mounted).toBeGreaterThan(10)
    const lock3 = (await loadBundle(join(work, 'lock3.yaml'))).bundle
    for (const img of bundleImages(lock3)) await assertComplete(dst, repoOf(img.ref), parseReference(img.ref).digest!)
    // origins still name the public registry, not the intermediate copy
    const origins = Object.values(lock3.origins ?? {})
    expect(origins.length).toBeGreaterThan(10)
    expect(origins.filter((o) => !o.startsWith(sb.public.host))).toEqual([])
  })

  it('refuses a wrong password with one line naming the registry, pushes nothing, and never prints the password', async () => {
    const bad = join(work, 'bad-docker')
    await mkdir(bad, {recursive: true})
    const wrong = 'not-the-password-0123'
    await writeFile(join(bad, 'config.json'), JSON.stringify({auths: {[sb.airgap.host]: {auth: Buffer.from(`${sb.airgap.username}:${wrong}`).toString('base64')}}}))
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/wrong-pass`, '--lock-output', join(work, 'bad.yaml'), '--ca-cert', sb.caFile], {...env, DOCKER_CONFIG: bad})
    const line = expectCleanFailure(r)
    expect(line).toContain(sb.airgap.host)
    // refused credentials, not any failure (exit 4: auth)
    expect(r.code, line).toBe(4)
    expect(r.stdout + r.stderr).not.toContain(wrong)
    // no image of the bundle is there, by digest
    const images = bundleImages(sb.bundle.v1!)
    expect(images.length).toBeGreaterThan(5)
    for (const img of images) {
      const ref = parseReference(img.ref)
      expect(await dst.headManifest({registry: sb.airgap.host, repository: `wrong-pass/${ref.repository}`}, ref.digest!), img.ref).toBeUndefined()
    }
  })

  it('fails clearly on a TLS registry with an unknown CA unless --ca-cert is given', async () => {
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/no-ca`, '--lock-output', join(work, 'noca.yaml')], env)
    const line = expectCleanFailure(r)
    expect(line).toMatch(/TLS|certificate/)
    expect(line).toContain('--ca-cert')
  })

  it('stops a relocation killed mid-way with no manifest lacking its blobs, and a rerun completes it', async () => {
    // The destination is go-containerregistry's registry, which accepts an image manifest whose
    // blobs are missing (distribution refuses it, so against distribution this check could not
    // fail). Why this test fails if kpi pushed a manifest before its blobs: the kill lands when about
    // half of the blobs are copied, and we require that some root manifests are there and some are
    // not. Had kpi pushed manifests first (all up front, or each just before its blobs), then at that
    // point either every root would already be present (the "some absent" check fails) or a present
    // manifest would name a blob still missing, the one in flight or not started (the blob check on
    // every present manifest, index children included, fails).
    const big = await startSandbox({runDir: join(work, 'big'), samples: ['v1'], scale: 24})
    const registries: GgcrRegistry[] = []
    try {
      const source = createRegistryClient({plainHttp: (r) => r === big.public.host})
      /** every manifest of the image at the source: digest -> parsed, index children included */
      const sourceTree = async (repo: Repo, digest: string, out = new Map<string, ImageIndex & ImageManifest>()) => {
        const m = JSON.parse((await source.getManifest(repo, digest)).bytes.toString('utf8')) as ImageIndex & ImageManifest
        out.set(digest, m)
        for (const c of m.manifests ?? []) await sourceTree(repo, c.digest, out)
        return out
      }
      const roots = bundleImages(big.bundle.v1!)
      const trees = new Map<string, Map<string, ImageIndex & ImageManifest>>()
      for (const img of roots) trees.set(img.ref, await sourceTree(repoOf(img.ref), parseReference(img.ref).digest!))
      await source.close()

      /**
       * Relocate into a fresh ggcr registry, SIGKILL once `threshold` blobs are copied (or, for
       * 'first-root', once a root manifest answers at the destination); what is there then.
       */
      const killedAt = async (threshold: number | 'first-root') => {
        const gg = await startGgcrRegistry({runDir: join(work, 'big', `ggcr-${threshold}`), name: `ggcr-${threshold}`})
        registries.push(gg)
        const lock = join(work, `killed-${threshold}.yaml`)
        const args = ['relocate', '-b', big.bundles.v1!, '--to-repo', `${gg.host}/killed`, '--lock-output', lock, '--plain-http', gg.host, '--json', '--concurrency', '2']
        const run = startKpi(args, big.env)
        let copied = 0
        let partial = ''
        let ended = false
        await new Promise<void>((resolve) => {
          const kill = () => {
            if (run.child.exitCode === null) run.child.kill('SIGKILL')
            resolve()
          }
          if (threshold === 'first-root') {
            const watch = createRegistryClient({plainHttp: (r) => r === gg.host})
            void (async () => {
              try {
                while (!ended) {
                  for (const img of roots) {
                    if (await watch.headManifest({registry: gg.host, repository: `killed/${parseReference(img.ref).repository}`}, parseReference(img.ref).digest!)) return kill()
                  }
                  await new Promise((r) => setTimeout(r, 20))
                }
              } finally {
                await watch.close()
              }
            })()
          } else {
            run.child.stderr!.on('data', (d: Buffer) => {
              // count whole lines only: a chunk may end in the middle of an event
              const lines = (partial + d.toString()).split('\n')
              partial = lines.pop()!
              copied += lines.filter((l) => l.includes('"action":"copied"')).length
              if (copied >= threshold) kill()
            })
          }
          void run.done.then(() => {
            ended = true
            resolve()
          })
        })
        ended = true
        const res = await run.done
        expect(res.signal, `the run ended before it was killed (${threshold === 'first-root' ? 'no root manifest seen' : `${threshold} blobs copied`}):\n${res.stderr.slice(-2000)}`).toBe('SIGKILL')

        const client = createRegistryClient({plainHttp: (r) => r === gg.host})
        let presentRoots = 0
        let presentManifests = 0
        try {
          for (const img of roots) {
            const repo = {registry: gg.host, repository: `killed/${parseReference(img.ref).repository}`}
            const digest = parseReference(img.ref).digest!
            if (await client.headManifest(repo, digest)) presentRoots++
            // every manifest of the image that is there, root or index child, has all it names
            for (const [d, m] of trees.get(img.ref)!) {
              if (!(await client.headManifest(repo, d))) continue
              presentManifests++
              if (m.manifests) {
                for (const c of m.manifests) expect(await client.headManifest(repo, c.digest), `${img.path}: index ${d} present without child ${c.digest}`).toBeDefined()
              } else {
                for (const b of [m.config, ...m.layers]) expect(await client.hasBlob(repo, b.digest), `${img.path}: manifest ${d} present without blob ${b.digest}`).toBe(true)
              }
            }
          }
        } finally {
          await client.close()
        }
        return {gg, args, lock, presentRoots, presentManifests}
      }

      // the sample has 34 unique blobs: kill at about half; if the kill landed before the first or
      // after the last root manifest, move the kill point once and require it mid-way then. The
      // roots complete late when the big blobs go first (26 blobs in and none there, once in CI):
      // then the kill comes as soon as the destination answers for one root
      let k = await killedAt(17)
      if (k.presentRoots === 0) k = await killedAt('first-root')
      else if (k.presentRoots === roots.length) k = await killedAt(9)
      expect(k.presentRoots, 'some root manifests are there when the run is killed').toBeGreaterThan(0)
      expect(k.presentRoots, 'some root manifests are missing when the run is killed').toBeLessThan(roots.length)

      const again = await kpi(k.args.slice(0, -2), big.env)
      expect(again.code, again.stderr).toBe(0)
      const done = (await loadBundle(k.lock)).bundle
      expect(bundleImages(done).map((i) => i.ref)).toEqual(roots.map((img) => `${k.gg.host}/killed/${parseReference(img.ref).repository}@${parseReference(img.ref).digest}`))
      const client = createRegistryClient({plainHttp: (r) => r === k.gg.host})
      try {
        for (const img of bundleImages(done)) {
          const all = await assertComplete(client, repoOf(img.ref), parseReference(img.ref).digest!)
          expect(all.sort()).toEqual([...trees.get(done.origins![img.ref]!)!.keys()].sort())
        }
      } finally {
        await client.close()
      }
    } finally {
      await Promise.all(registries.map((r) => r.stop()))
      await big.stop()
    }
  })
})

describe('kpi relocate bad input', () => {
  const relocateTo = (bundle: string, extra: string[] = []) =>
    kpi(['relocate', '-b', bundle, '--to-repo', `${sb.airgap.host}/bad`, '--lock-output', join(work, 'x.yaml'), '--ca-cert', sb.caFile, ...extra], env)

  const variant = async (name: string, edit: (text: string) => string): Promise<string> => {
    const dir = join(work, 'variants', name)
    await mkdir(dir, {recursive: true})
    await writeFile(join(dir, 'bundle.yaml'), edit(await readFile(join(sb.bundles.v1!, 'bundle.yaml'), 'utf8')))
    return dir
  }

  it('names a missing bundle file', async () => {
    const line = expectCleanFailure(await relocateTo(join(work, 'nope')))
    expect(line).toContain(join(work, 'nope'))
  })

  it('gives the line of a YAML syntax error', async () => {
    const dir = await variant('syntax', (t) => t.replace('stacks:', 'stacks: [oops'))
    const r = await relocateTo(dir)
    expect(expectCleanFailure(r)).toContain('bundle.yaml')
    expect(r.stderr).toMatch(/bundle\.yaml:\d+:\d+: .*(flow|YAML|syntax|collection)/i)
  })

  it('names a reference without a digest and says how to pin it', async () => {
    const dir = await variant('nodigest', (t) => t.replace(/(lifecycle:\n\s+image: [^@\n]+)@sha256:[0-9a-f]{64}/, '$1'))
    const line = expectCleanFailure(await relocateTo(dir))
    expect(line).toContain('lifecycle.image')
    expect(line).toMatch(/digest/)
  })

  it('names an unknown stack in a builder', async () => {
    const dir = await variant('nostack', (t) => t.replace(/stack: base/, 'stack: missing-stack'))
    expect(expectCleanFailure(await relocateTo(dir))).toContain('missing-stack')
  })

  it('names an unreachable registry', async () => {
    const line = expectCleanFailure(await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', '127.0.0.1:1/x', '--lock-output', join(work, 'y.yaml')], env))
    expect(line).toContain('127.0.0.1:1')
  })

  it('names an image missing at the source', async () => {
    const dir = await variant('missing', (t) => t.replace(/(lifecycle:\n\s+image: [^@\n]+@sha256:)[0-9a-f]{64}/, `$1${'0'.repeat(64)}`))
    const line = expectCleanFailure(await relocateTo(dir))
    expect(line).toContain('0000000000')
    expect(line).toContain('lifecycle')
  })
})
