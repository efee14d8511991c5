/**
 * Registry-to-registry relocation of the sample platform through the CLI, against real
 * distribution registries: the public one (plain) and the air-gapped one (htpasswd + TLS).
 */
import {mkdtemp, readFile, writeFile, mkdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {loadBundle} from '../src/bundle/load.js'
import {bundleImages} from '../src/bundle/images.js'
import {createRegistryClient} from '../src/oci/client.js'
import {sha256Digest} from '../src/oci/digest.js'
import {attachReferrer} from '../src/oci/referrers.js'
import {parseReference} from '../src/oci/reference.js'
import {MediaTypes, type ImageIndex, type ImageManifest, type RegistryClient, type Repo} from '../src/oci/types.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi, startKpi} from './helpers/cli.js'

let sb: Sandbox
let work: string
let dst: RegistryClient
let src: RegistryClient
let env: Record<string, string>

const repoOf = (ref: string): Repo => {
  const r = parseReference(ref)
  return {registry: r.registry, repository: r.repository}
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-relocate-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']})
  env = {...sb.env}
  const caPem = await readFile(sb.caFile, 'utf8')
  dst = createRegistryClient({caCerts: [caPem], credentials: async () => ({username: sb.airgap.username, password: sb.airgap.password})})
  src = createRegistryClient({plainHttp: (r) => r === sb.public.host})
})

afterAll(async () => {
  await dst?.close()
  await src?.close()
  await sb?.stop()
})

/** Every manifest of the image (index children included) with its blobs, as the destination serves them. */
async function assertComplete(client: RegistryClient, repo: Repo, digest: string, seen: string[] = []): Promise<string[]> {
  const m = await client.getManifest(repo, digest)
  expect(sha256Digest(m.bytes)).toBe(digest)
  seen.push(digest)
  const parsed = JSON.parse(m.bytes.toString('utf8')) as ImageIndex & ImageManifest
  if (parsed.manifests) {
    for (const c of parsed.manifests) await assertComplete(client, repo, c.digest, seen)
  } else {
    for (const b of [parsed.config, ...parsed.layers]) expect(await client.hasBlob(repo, b.digest), `${repo.repository} blob ${b.digest}`).toBe(true)
  }
  return seen
}

describe('kpi relocate registry to registry', () => {
  let lockFile: string

  it('relocates every image of the sample (12 images, a multi-arch index, shared layers) with digests and bytes unchanged', async () => {
    const source = sb.bundle.v1!
    // a signature attached to the controller image travels with it
    const ctrl = repoOf(source.kpack.images.controller)
    const ctrlDigest = parseReference(source.kpack.images.controller).digest!
    const ctrlManifest = await src.getManifest(ctrl, ctrlDigest)
    const payload = Buffer.from(JSON.stringify({critical: {image: {'docker-manifest-digest': ctrlDigest}}}))
    const empty = Buffer.from('{}')
    for (const b of [payload, empty]) await src.putBlob(ctrl, sha256Digest(b), b.length, () => Readable.from([b]))
    const sig = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
      config: {mediaType: MediaTypes.ociEmpty, digest: sha256Digest(empty), size: 2},
      layers: [{mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: sha256Digest(payload), size: payload.length}],
      subject: {mediaType: ctrlManifest.mediaType, digest: ctrlDigest, size: ctrlManifest.bytes.length},
    }))
    const sigDigest = await attachReferrer(src, ctrl, sig, MediaTypes.ociManifest)

    lockFile = join(work, 'lock.yaml')
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', lockFile, '--ca-cert', sb.caFile, '--json'], env)
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as {summary: {images: number; bytesMoved: number; uniqueBytes: number; blobs: {copied: number}}}
    expect(out.summary.images).toBeGreaterThanOrEqual(12)
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
    expect(Object.values(lock3.origins ?? {}).every((o) => o.startsWith(sb.public.host))).toBe(true)
  })

  it('refuses a wrong password with one line naming the registry, pushes nothing, and never prints the password', async () => {
    const bad = join(work, 'bad-docker')
    await mkdir(bad, {recursive: true})
    const wrong = 'not-the-password-0123'
    await writeFile(join(bad, 'config.json'), JSON.stringify({auths: {[sb.airgap.host]: {auth: Buffer.from(`${sb.airgap.username}:${wrong}`).toString('base64')}}}))
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/wrong-pass`, '--lock-output', join(work, 'bad.yaml'), '--ca-cert', sb.caFile], {...env, DOCKER_CONFIG: bad})
    const line = expectCleanFailure(r)
    expect(line).toContain(sb.airgap.host)
    expect(r.stdout + r.stderr).not.toContain(wrong)
    const tags = await dst.listTags({registry: sb.airgap.host, repository: 'wrong-pass/kpack/controller'}).catch(() => [])
    expect(tags).toEqual([])
    expect(await dst.headManifest({registry: sb.airgap.host, repository: 'wrong-pass/kpack/controller'}, parseReference(sb.bundle.v1!.kpack.images.controller).digest!)).toBeUndefined()
  })

  it('fails clearly on a TLS registry with an unknown CA unless --ca-cert is given', async () => {
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/no-ca`, '--lock-output', join(work, 'noca.yaml')], env)
    const line = expectCleanFailure(r)
    expect(line).toMatch(/TLS|certificate/)
    expect(line).toContain('--ca-cert')
  })

  it('stops a relocation killed mid-way with no manifest lacking its blobs, and a rerun completes it', async () => {
    // a larger copy of the sample so the kill lands while blobs are moving
    const big = await startSandbox({runDir: join(work, 'big'), samples: ['v1'], scale: 24})
    try {
      const lock = join(work, 'killed.yaml')
      const args = ['relocate', '-b', big.bundles.v1!, '--to-repo', `${big.airgap.host}/killed`, '--lock-output', lock, '--ca-cert', big.caFile, '--json', '--concurrency', '2']
      const run = startKpi(args, big.env)
      let copied = 0
      await new Promise<void>((resolve) => {
        run.child.stderr!.on('data', (d: Buffer) => {
          copied += (d.toString().match(/"action":"copied"/g) ?? []).length
          if (copied >= 3) {
            run.child.kill('SIGKILL')
            resolve()
          }
        })
        void run.done.then(() => resolve())
      })
      const res = await run.done
      expect(res.signal).toBe('SIGKILL')
      const client = createRegistryClient({caCerts: [await readFile(big.caFile, 'utf8')], credentials: async () => ({username: big.airgap.username, password: big.airgap.password})})
      try {
        let present = 0
        for (const img of bundleImages(big.bundle.v1!)) {
          const repo = {registry: big.airgap.host, repository: `killed/${parseReference(img.ref).repository}`}
          const digest = parseReference(img.ref).digest!
          if (await client.headManifest(repo, digest)) {
            present++
            await assertComplete(client, repo, digest)
          }
        }
        expect(present).toBeLessThan(bundleImages(big.bundle.v1!).length)
        const again = await kpi(args.slice(0, -2), big.env)
        expect(again.code, again.stderr).toBe(0)
        const done = (await loadBundle(lock)).bundle
        for (const img of bundleImages(done)) await assertComplete(client, repoOf(img.ref), parseReference(img.ref).digest!)
      } finally {
        await client.close()
      }
    } finally {
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
