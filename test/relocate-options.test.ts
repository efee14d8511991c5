/**
 * Relocation options and inputs the main relocate test does not cover, through the CLI against
 * real registries: --no-referrers, Docker schema-2 manifests and manifest lists, and
 * --from-oci-layout from a layout skopeo wrote, with the public registry stopped.
 */
import {execFile} from 'node:child_process'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {promisify} from 'node:util'
import {gzipSync} from 'node:zlib'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {bundleImages} from '../src/bundle/images.js'
import {loadBundle} from '../src/bundle/load.js'
import {digestHex, sha256Digest} from '../src/oci/digest.js'
import {parseReference} from '../src/oci/reference.js'
import {attachReferrer} from '../src/oci/referrers.js'
import {MediaTypes, type RegistryClient, type Repo} from '../src/oci/types.js'
import type {Sandbox} from '../src/sandbox/sandbox.js'
import {kpi} from './helpers/cli.js'
import {assertComplete, refDigest as digestOfRef, refRepo as repoOf, signature, startRegistrySandbox, stopRegistrySandbox} from './helpers/images.js'

const run = promisify(execFile)

let sb: Sandbox
let work: string
let dst: RegistryClient
let src: RegistryClient
let env: Record<string, string>

beforeAll(async () => {
  ;({sb, work, src, dst, env} = await startRegistrySandbox('kpi-relocate-opts-'))
})

afterAll(() => stopRegistrySandbox({sb, src, dst, work}))

async function relocateCli(bundle: string, toRepo: string, lock: string, extra: string[] = []): Promise<void> {
  const r = await kpi(['relocate', '-b', bundle, '--to-repo', toRepo, '--lock-output', lock, '--ca-cert', sb.caFile, ...extra], env)
  expect(r.code, r.stderr).toBe(0)
  expect(r.stdout + r.stderr).not.toContain(sb.airgap.password!)
}

async function putBytes(client: RegistryClient, repo: Repo, bytes: Buffer): Promise<{digest: string; size: number}> {
  const digest = sha256Digest(bytes)
  await client.putBlob(repo, digest, bytes.length, () => Readable.from([bytes]))
  return {digest, size: bytes.length}
}

/** A Docker schema-2 image (docker config and gzip layer media types) pushed by digest. */
async function pushDockerImage(repo: Repo, seed: string, arch: string): Promise<{digest: string; bytes: Buffer}> {
  const layer = gzipSync(Buffer.from(`docker layer ${seed} ${arch}\n`.repeat(64)))
  const l = await putBytes(src, repo, layer)
  const config = Buffer.from(JSON.stringify({
    architecture: arch, os: 'linux', config: {Env: [`SEED=${seed}`]},
    rootfs: {type: 'layers', diff_ids: [sha256Digest(`uncompressed ${seed}`)]},
  }))
  const c = await putBytes(src, repo, config)
  // key order and spacing as docker writes them; the test checks these exact bytes arrive
  const bytes = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaTypes.dockerManifest,
    config: {mediaType: MediaTypes.dockerConfig, size: c.size, digest: c.digest},
    layers: [{mediaType: MediaTypes.dockerLayerGzip, size: l.size, digest: l.digest}],
  }, null, 3))
  const digest = await src.putManifest(repo, sha256Digest(bytes), bytes, MediaTypes.dockerManifest)
  expect(digest).toBe(sha256Digest(bytes))
  return {digest, bytes}
}

describe('kpi relocate options', () => {
  it('--no-referrers leaves a signature behind and still moves the image whole', async () => {
    const source = sb.bundle.v1!
    const ctrl = repoOf(source.kpack.images.controller)
    const ctrlDigest = digestOfRef(source.kpack.images.controller)
    const sig = await signature(src, ctrl, ctrlDigest)
    const sigDigest = await attachReferrer(src, ctrl, sig, MediaTypes.ociManifest)
    // the signature really is discoverable at the source, so its absence below means something
    expect((await src.referrers(ctrl, ctrlDigest)).map((d) => d.digest)).toContain(sigDigest)

    const lockFile = join(work, 'noref.yaml')
    await relocateCli(sb.bundles.v1!, `${sb.airgap.host}/noref`, lockFile, ['--no-referrers'])
    const lock = (await loadBundle(lockFile)).bundle
    for (const img of bundleImages(lock)) {
      expect(img.ref.startsWith(`${sb.airgap.host}/noref/`)).toBe(true)
      await assertComplete(dst, repoOf(img.ref), digestOfRef(img.ref))
    }
    const dctrl = repoOf(lock.kpack.images.controller)
    expect(digestOfRef(lock.kpack.images.controller)).toBe(ctrlDigest)
    expect(await dst.referrers(dctrl, ctrlDigest)).toEqual([])
    expect(await dst.headManifest(dctrl, sigDigest)).toBeUndefined()
    expect(await dst.listTags(dctrl)).not.toContain(`sha256-${digestHex(ctrlDigest)}`)
    const payloadDigest = (JSON.parse(sig.toString('utf8')) as {layers: Array<{digest: string}>}).layers[0]!.digest
    expect(await dst.hasBlob(dctrl, payloadDigest)).toBe(false)

    // without the flag, the same relocation does take it (the flag is what left it behind)
    const withRefs = join(work, 'withref.yaml')
    await relocateCli(sb.bundles.v1!, `${sb.airgap.host}/withref`, withRefs)
    const wctrl = repoOf((await loadBundle(withRefs)).bundle.kpack.images.controller)
    expect((await dst.referrers(wctrl, ctrlDigest)).map((d) => d.digest)).toContain(sigDigest)
  })

  it('relocates Docker schema-2 manifests and manifest lists byte for byte', async () => {
    const pub = sb.public.host
    const single: Repo = {registry: pub, repository: 'docker/lifecycle'}
    const multi: Repo = {registry: pub, repository: 'docker/run'}
    const image = await pushDockerImage(single, 'lifecycle', 'amd64')
    const children = [await pushDockerImage(multi, 'run', 'amd64'), await pushDockerImage(multi, 'run', 'arm64')]
    const list = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.dockerManifestList,
      manifests: children.map((c, i) => ({
        mediaType: MediaTypes.dockerManifest, size: c.bytes.length, digest: c.digest,
        platform: {architecture: i === 0 ? 'amd64' : 'arm64', os: 'linux'},
      })),
    }, null, 3))
    const listDigest = await src.putManifest(multi, '1', list, MediaTypes.dockerManifestList)
    expect(listDigest).toBe(sha256Digest(list))
    await src.putManifest(single, '1', image.bytes, MediaTypes.dockerManifest)

    const text = await readFile(join(sb.bundles.v1!, 'bundle.yaml'), 'utf8')
    const lifecycleRef = `${pub}/docker/lifecycle:1@${image.digest}`
    const runRef = `${pub}/docker/run:1@${listDigest}`
    const edited = text
      .replace(/(lifecycle:\n\s+image: )\S+/, `$1${lifecycleRef}`)
      .replace(/(runImage: )\S+/, `$1${runRef}`)
    expect(edited).toContain(lifecycleRef)
    expect(edited).toContain(runRef)
    const dir = join(work, 'docker-bundle')
    await mkdir(dir, {recursive: true})
    await writeFile(join(dir, 'bundle.yaml'), edited)

    const lockFile = join(work, 'docker-lock.yaml')
    await relocateCli(dir, `${sb.airgap.host}/docker`, lockFile)
    const lock = (await loadBundle(lockFile)).bundle
    expect(lock.origins?.[lock.lifecycle.image]).toBe(lifecycleRef)
    expect(lock.origins?.[lock.stacks[0]!.runImage]).toBe(runRef)

    const dLifecycle = repoOf(lock.lifecycle.image)
    expect(digestOfRef(lock.lifecycle.image)).toBe(image.digest)
    const m = await dst.getManifest(dLifecycle, image.digest)
    expect(m.bytes.equals(image.bytes)).toBe(true)
    expect(m.mediaType).toBe(MediaTypes.dockerManifest)
    await assertComplete(dst, dLifecycle, image.digest)

    const dRun = repoOf(lock.stacks[0]!.runImage)
    expect(digestOfRef(lock.stacks[0]!.runImage)).toBe(listDigest)
    const l = await dst.getManifest(dRun, listDigest)
    expect(l.bytes.equals(list)).toBe(true)
    expect(l.mediaType).toBe(MediaTypes.dockerManifestList)
    for (const c of children) {
      const cm = await dst.getManifest(dRun, c.digest)
      expect(cm.bytes.equals(c.bytes)).toBe(true)
      expect(cm.mediaType).toBe(MediaTypes.dockerManifest)
    }
    expect(await assertComplete(dst, dRun, listDigest)).toEqual([listDigest, ...children.map((c) => c.digest)])
  })

  // last: it stops the public registry
  it('--from-oci-layout relocates from a layout skopeo wrote, with the public registry stopped', async () => {
    const layout = join(work, 'layout')
    const images = bundleImages(sb.bundle.v1!)
    for (const [i, img] of images.entries()) {
      const r = parseReference(img.ref)
      await run('skopeo', ['copy', '--all', '--quiet', '--src-tls-verify=false',
        `docker://${r.registry}/${r.repository}@${r.digest}`, `oci:${layout}:image-${i}`], {timeout: 120_000})
    }
    await sb.public.stop()
    // nothing answers there any more (a fresh connection, not the client's pooled one)
    await expect(fetch(`${sb.public.url}/v2/`)).rejects.toThrow()

    const lockFile = join(work, 'layout-lock.yaml')
    const toRepo = `${sb.airgap.host}/from-layout`
    await relocateCli(sb.bundles.v1!, toRepo, lockFile, ['--from-oci-layout', layout])
    const lock = (await loadBundle(lockFile)).bundle
    const lockImages = bundleImages(lock)
    expect(lockImages).toHaveLength(images.length)
    let manifests = 0
    for (const [i, img] of lockImages.entries()) {
      expect(img.ref.startsWith(`${toRepo}/`)).toBe(true)
      expect(repoOf(img.ref).repository).toBe(`from-layout/${repoOf(images[i]!.ref).repository}`)
      expect(lock.origins?.[img.ref]).toBe(images[i]!.ref)
      const digest = digestOfRef(img.ref)
      expect(digest).toBe(digestOfRef(images[i]!.ref))
      manifests += (await assertComplete(dst, repoOf(img.ref), digest)).length
    }
    // the sample has a multi-arch index: its children came from the layout too
    expect(manifests).toBeGreaterThan(images.length)
  })
})
