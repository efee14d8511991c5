/**
 * Bundles as OCI images, as imgpkg keeps bundles: `kpi bundle push` puts a bundle directory in the
 * public registry as an image (same files, same digest); `kpi relocate -b REPO@sha256:…` copies the
 * bundle image byte for byte and every image it names to the air-gapped registry, and the relocated
 * bundle image carries the lock (a referrer) that says where they went; `kpi install -b` takes the
 * relocated bundle image and installs from that lock on a real control plane.
 */
import {mkdtemp, readFile, writeFile, cp, mkdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'
import {gzipSync} from 'node:zlib'
import {BUNDLE_LABEL, pullBundleArtifact} from '../src/bundle/artifact.js'
import {END_OF_ARCHIVE, entryHeader, paddingBytes} from '../src/archive/tar.js'
import {KpiError} from '../src/errors.js'
import {digestOf, MediaTypes, pushBlobBytes} from '../src/oci/index.js'
import {loadBundle} from '../src/bundle/load.js'
import {LOCK_ARTIFACT_TYPE} from '../src/bundle/source.js'
import type {OciClient} from '../src/oci/client.js'
import {parseReference} from '../src/oci/reference.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {findTool} from '../src/sandbox/tools.js'
import {expectCleanFailure, kpi} from './helpers/cli.js'
import {refRepo, sandboxClients} from './helpers/images.js'

// the install step needs a control plane; everything else only the registries
const controlPlane = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'etcd', 'kwok'].every((t) => findTool(t as 'etcd'))
let sb: Sandbox
let work: string
let src: OciClient
let dst: OciClient
let bundleDir: string

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-bundle-image-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1'], controlPlane})
  ;({src, dst} = await sandboxClients(sb))
  bundleDir = join(work, 'bundle')
  await cp(sb.bundles.v1!, bundleDir, {recursive: true})
  await mkdir(join(bundleDir, 'docs'))
  await writeFile(join(bundleDir, 'docs', 'RELEASE-NOTES.md'), '# 1.0.0\n\nFirst release.\n')
  await writeFile(join(bundleDir, '.npmrc'), '//registry.example/:_authToken=not-for-travel\n')
})

afterAll(async () => {
  await src?.close()
  await dst?.close()
  await sb?.stop()
})

describe('kpi bundle push, relocate -b REPO@sha256, install -b', () => {
  let image: string
  let digest: string

  it('pushes the bundle directory as an image (hidden files left out, said); the same files give the same digest', async () => {
    const to = `${sb.public.host}/platform/build-service`
    const r = await kpi(['bundle', 'push', bundleDir, '--to-repo', to, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as {image: string; digest: string; files: string[]; warnings: string[]}
    expect(out.image).toBe(`${to}:1.0.0@${out.digest}`)
    expect(out.files.sort()).toEqual(['README.txt', 'bundle.yaml', 'docs/RELEASE-NOTES.md'])
    expect(out.warnings).toEqual(['bundle file .npmrc left out of the bundle image: hidden files may hold credentials'])
    ;({image, digest} = out)
    const again = await kpi(['bundle', 'push', bundleDir, '--to-repo', `${to}:again`], sb.env)
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toContain(`as ${to}:again@${digest}`)
    expect(again.stderr).toContain('warning: bundle file .npmrc left out of the bundle image')
  })

  it('relocates the bundle image and every image it names; the relocated image is byte-identical, has the files and carries the lock', async () => {
    const lockFile = join(work, 'lock.yaml')
    const r = await kpi(['relocate', '-b', `${sb.public.host}/platform/build-service@${digest}`, '--to-repo', sb.airgapPrefix, '--lock-output', lockFile, '--ca-cert', sb.caFile, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as {bundleImage: string; summary: {images: number}}
    const relocated = `${sb.airgapPrefix}/platform/build-service@${digest}`
    expect(out.bundleImage).toBe(relocated)
    const lock = (await loadBundle(lockFile)).bundle
    // the same lock as relocating the directory gives
    const dirLock = join(work, 'dir-lock.yaml')
    const d = await kpi(['relocate', '-b', bundleDir, '--to-repo', sb.airgapPrefix, '--lock-output', dirLock, '--ca-cert', sb.caFile], sb.env)
    expect(d.code, d.stderr).toBe(0)
    expect(await readFile(lockFile, 'utf8')).toBe(await readFile(dirLock, 'utf8'))

    const a = await src.getManifest(refRepo(image), digest)
    const b = await dst.getManifest(refRepo(relocated), digest)
    expect(Buffer.compare(a.bytes, b.bytes)).toBe(0)
    const into = await mkdtemp(join(work, 'pulled-'))
    const pulled = await pullBundleArtifact(dst, refRepo(relocated), digest, into)
    expect(pulled.files.sort()).toEqual(['README.txt', 'bundle.yaml', 'docs/RELEASE-NOTES.md'])
    expect(await readFile(join(into, 'docs', 'RELEASE-NOTES.md'), 'utf8')).toBe('# 1.0.0\n\nFirst release.\n')
    const refs = await dst.referrers(refRepo(relocated), digest)
    expect(refs.map((x) => x.artifactType)).toContain(LOCK_ARTIFACT_TYPE)
  })

  it('refuses a bundle image by tag only, and an image that is not a bundle, in one line', async () => {
    const byTag = await kpi(['relocate', '-b', `${sb.public.host}/platform/build-service:1.0.0`, '--to-repo', sb.airgapPrefix, '--lock-output', join(work, 'x.yaml')], sb.env)
    expect(expectCleanFailure(byTag)).toBe(`Error: -b ${sb.public.host}/platform/build-service:1.0.0: no such file, and as a bundle image it names no digest: give REPO@sha256:<digest> as kpi bundle push printed it, or a bundle directory`)
    const ctrl = sb.bundle.v1!.kpack.images.controller
    const p = parseReference(ctrl)
    const notBundle = await kpi(['relocate', '-b', `${p.registry}/${p.repository}@${p.digest}`, '--to-repo', sb.airgapPrefix, '--lock-output', join(work, 'x.yaml')], sb.env)
    expect(expectCleanFailure(notBundle)).toBe(`Error: ${p.registry}/${p.repository}@${p.digest} is not a kpi bundle image: its config has no dev.kpi.bundle label: push one with kpi bundle push DIR --to-repo REPO`)
  })

  it.skipIf(!controlPlane)('installs from the relocated bundle image (the lock it carries)', async () => {
    const values = join(work, 'values.yaml')
    await writeFile(values, stringify({
      registry: {server: sb.airgap.host, repository: 'build-service', username: sb.airgap.username, password: sb.airgap.password},
      caCerts: [await readFile(sb.caFile, 'utf8')],
      kpack: {webhook: {failurePolicy: 'Ignore'}},
    }))
    const relocated = `${sb.airgapPrefix}/platform/build-service@${digest}`
    const r = await kpi(['install', '-b', relocated, '-f', values, '--ca-cert', sb.caFile, '--wait=applied', '--json'], {...sb.env, KUBECONFIG: sb.controlPlane!.kubeconfig})
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as {revision: number; name: string}
    expect(out).toMatchObject({revision: 1, name: 'build-service'})
    // the bundle image as pushed (not relocated) carries no lock: said
    const unrelocated = await kpi(['install', '-b', image.replace(/:1\.0\.0@/, '@'), '-f', values, '--wait=applied'], {...sb.env, KUBECONFIG: sb.controlPlane!.kubeconfig})
    expect(expectCleanFailure(unrelocated)).toContain('carries no relocated lock: relocate it first')
  })
})

describe('a bundle image that is damaged or crafted', () => {
  const repo = () => ({registry: sb.public.host, repository: 'platform/crafted'})
  /** pushes an image of this config and this one layer; its digest */
  const push = async (config: Buffer, layer: Buffer): Promise<string> => {
    for (const b of [config, layer]) await pushBlobBytes(src, repo(), b)
    const m = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {mediaType: MediaTypes.ociConfig, digest: digestOf(config), size: config.length},
      layers: [{mediaType: MediaTypes.ociLayerGzip, digest: digestOf(layer), size: layer.length}]}))
    return src.putManifest(repo(), digestOf(m), m, MediaTypes.ociManifest)
  }
  const labelled = Buffer.from(JSON.stringify({config: {Labels: {[BUNDLE_LABEL]: 'true'}}}))
  const member = (name: string, body: Buffer, type?: string): Buffer => {
    const h = entryHeader(name, body.length)
    if (type) {
      h.write(type, 156, 'latin1')
      // the header's checksum again, its own field counted as spaces
      let sum = 0
      for (let i = 0; i < h.length; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!
      h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
    }
    return Buffer.concat([h, body, paddingBytes(body.length)])
  }
  const refusal = async (digest: string): Promise<string> => {
    const e = await pullBundleArtifact(src, repo(), digest, await mkdtemp(join(work, 'pull-'))).then(() => undefined, (err: unknown) => err)
    expect(e).toBeInstanceOf(KpiError)
    expect((e as KpiError).kind).toBe('input')
    return (e as Error).message
  }

  it('is refused as not a bundle image, saying what is wrong, for each kind of damage', async () => {
    const tar = Buffer.concat([member('bundle.yaml', Buffer.from('x: 1\n')), END_OF_ARCHIVE])
    expect(await refusal(await push(Buffer.from('{not json'), gzipSync(tar)))).toMatch(/is not a kpi bundle image: its config is not JSON$/)
    expect(await refusal(await push(labelled, Buffer.from('not gzip at all')))).toMatch(/its layer is not gzip$/)
    // 100 MiB of zeros packs into about 100 KiB: refused without being unpacked whole
    expect(await refusal(await push(labelled, gzipSync(Buffer.alloc(100 << 20), {level: 9})))).toMatch(/its layer unpacks to more than \d+ bytes$/)
    const badPax = Buffer.concat([member('PaxHeader', Buffer.from('99 path=x\n'), 'x'), member('bundle.yaml', Buffer.from('x: 1\n')), END_OF_ARCHIVE])
    expect(await refusal(await push(labelled, gzipSync(badPax)))).toMatch(/the extended header before member PaxHeader is malformed$/)
    const truncated = member('bundle.yaml', Buffer.alloc(4096, 0x61)).subarray(0, 1024)
    expect(await refusal(await push(labelled, gzipSync(truncated)))).toMatch(/its layer ends inside member bundle\.yaml$/)
  })
})
