import {execFile} from 'node:child_process'
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdtemp, readdir, readFile, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {promisify} from 'node:util'
import {createGunzip} from 'node:zlib'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {bundleImages, loadBundle} from '../src/bundle/index.js'
import {blobPath, generateImage, generateSample, writeBundleDir, writeLayer, type SampleResult} from '../src/imagegen/index.js'
import type {ImageIndex, ImageManifest} from '../src/oci/types.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'

const run = promisify(execFile)
const tmp = (name: string) => mkdtemp(join(tmpdir(), `kpi-imagegen-${name}-`))
const readJson = async <T>(layout: string, digest: string): Promise<T> => JSON.parse(await readFile(blobPath(layout, digest), 'utf8')) as T
const sha256File = async (path: string, gunzip = false): Promise<string> => {
  const h = createHash('sha256')
  const file = createReadStream(path)
  if (gunzip) {
    await pipeline(file, createGunzip(), async (src: AsyncIterable<Buffer>) => {
      for await (const b of src) h.update(b)
    })
  } else for await (const b of file) h.update(b as Buffer)
  return `sha256:${h.digest('hex')}`
}
const byPath = (r: SampleResult) => new Map(r.images.map((i) => [i.path, i]))

let cache: string
let v1: SampleResult
let v2: SampleResult

beforeAll(async () => {
  cache = await tmp('cache')
  const layout = await tmp('layout')
  v1 = await generateSample({version: 'v1', layoutDir: layout, cacheDir: cache})
  v2 = await generateSample({version: 'v2', layoutDir: layout, cacheDir: cache})
})

describe('writeLayer', () => {
  it('writes a gzip tar with fixed headers whose diff_id is the sha256 of the tar', async () => {
    const layout = await tmp('layer')
    const l = await writeLayer(layout, {seed: 'golden', size: 3 * 1024 * 1024 + 5, fileSize: 1024 * 1024, files: [{path: 'etc/motd', content: 'hello\n'}, {path: 'bin/run', content: '#!/bin/sh\n', mode: 0o755}]}, {cacheDir: false})
    expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip')
    const path = blobPath(layout, l.digest)
    expect((await stat(path)).size).toBe(l.size)
    expect(await sha256File(path)).toBe(l.digest)
    expect(await sha256File(path, true)).toBe(l.diffId)
    await run('gzip', ['-t', path])
    const {stdout} = await run('tar', ['--numeric-owner', '-tvzf', path])
    const lines = stdout.trim().split('\n')
    expect(lines.map((x) => x.split(/\s+/).pop())).toEqual([
      'bin/', 'bin/run', 'etc/', 'etc/motd', 'opt/', 'opt/kpi/', 'opt/kpi/golden/',
      'opt/kpi/golden/data-0000.bin', 'opt/kpi/golden/data-0001.bin', 'opt/kpi/golden/data-0002.bin', 'opt/kpi/golden/data-0003.bin',
    ])
    for (const x of lines) expect(x).toMatch(/^[-d][-rwx]{9} 0\/0 +\d+ 1980-01-01 00:00 /)
    expect(lines[1]).toMatch(/^-rwxr-xr-x 0\/0 +10 /)
    expect(lines[10]).toMatch(/^-rw-r--r-- 0\/0 +5 /)
    // Golden: the generator's bytes must not drift between machines or releases unnoticed
    // (bump GENERATOR_VERSION and this digest together when the format changes on purpose).
    expect(l.digest).toBe('sha256:801e8f841eb427fa23539c9996d19e07c0773d7ad63d38e67bdae4db0f387361')
  })

  it('makes images whose config names the layers by diff_id', async () => {
    const layout = await tmp('image')
    const img = await generateImage(layout, {
      platform: {architecture: 'arm64', os: 'linux'},
      layers: [{seed: 'a', size: 1000}, {seed: 'b', size: 2000}],
      config: {Env: ['A=1'], Labels: {z: '1', a: '2'}},
    }, {cacheDir: false})
    const m = await readJson<ImageManifest>(layout, img.descriptor.digest)
    expect(m.layers.map((l) => l.digest)).toEqual(img.layers.map((l) => l.digest))
    const cfg = await readJson<{architecture: string; rootfs: {diff_ids: string[]}; config: {Labels: Record<string, string>}}>(layout, m.config.digest)
    expect(cfg.architecture).toBe('arm64')
    expect(cfg.rootfs.diff_ids).toEqual(img.layers.map((l) => l.diffId))
    expect(Object.keys(cfg.config.Labels)).toEqual(['a', 'z'])
    expect(img.descriptor.platform).toEqual({architecture: 'arm64', os: 'linux'})
  })
})

describe('generateSample', () => {
  it('is deterministic: two layouts get the same digests and the same bytes', async () => {
    const [a, b] = [await tmp('det-a'), await tmp('det-b')]
    const ra = await generateSample({version: 'v1', layoutDir: a, cacheDir: false})
    const rb = await generateSample({version: 'v1', layoutDir: b, cacheDir: false})
    expect(rb.images).toEqual(ra.images)
    expect(ra.images).toEqual(v1.images)
    expect(await readFile(join(b, 'index.json'), 'utf8')).toBe(await readFile(join(a, 'index.json'), 'utf8'))
    const blobs = async (d: string) => (await readdir(join(d, 'blobs/sha256'))).sort()
    expect(await blobs(b)).toEqual(await blobs(a))
    expect(ra.bytes).toBe(rb.bytes)
  })

  it('has 14 tagged images and a bundle that validates', async () => {
    expect(v1.images).toHaveLength(14)
    expect(v1.images.map((i) => i.refName)).toEqual([
      'kpack/controller:0.16.1', 'kpack/webhook:0.16.1', 'kpack/build-init:0.16.1', 'kpack/build-waiter:0.16.1',
      'kpack/rebase:0.16.1', 'kpack/completion:0.16.1', 'cert-injection-webhook/webhook:0.6.6', 'cert-injection-webhook/setup-ca-certs:0.6.6',
      'buildpacks/lifecycle:0.20.4', 'stacks/build:jammy-1.0.0', 'stacks/run:jammy-1.0.0', 'buildpacks/java:1.2.0', 'buildpacks/nodejs:2.0.0',
      'buildpacks/go:1.4.0',
    ])
    const b = v1.bundle('127.0.0.1:5000', 'platform')
    const dir = await writeBundleDir(b, join(await tmp('bundle'), 'build-service-1.0.0'))
    const loaded = await loadBundle(dir)
    expect(loaded.bundle).toEqual(b)
    expect(loaded.bundle.metadata).toEqual({name: 'build-service', version: '1.0.0'})
    expect(bundleImages(b)[10]).toEqual({path: 'stacks[0].runImage', ref: `127.0.0.1:5000/platform/stacks/run:jammy-1.0.0@${byPath(v1).get('stacks[0].runImage')!.digest}`})
    expect(await readFile(join(dir, 'README.txt'), 'utf8')).toContain('build-service 1.0.0')
    expect(bundleImages(v1.bundle('reg.example:443'))[0]?.ref).toMatch(/^reg\.example:443\/kpack\/controller:0\.16\.1@sha256:[0-9a-f]{64}$/)
    // a few MiB at scale 1
    expect(v1.bytes).toBeGreaterThan(3 * 2 ** 20)
    expect(v1.bytes).toBeLessThan(8 * 2 ** 20)
  })

  it('gives a run image that is a two-platform index sharing base layers with the build image', async () => {
    const images = byPath(v1)
    const run = images.get('stacks[0].runImage')!
    expect(run.mediaType).toBe('application/vnd.oci.image.index.v1+json')
    const index = await readJson<ImageIndex>(v1.layoutDir, run.digest)
    expect(index.manifests.map((m) => m.platform)).toEqual([{architecture: 'amd64', os: 'linux'}, {architecture: 'arm64', os: 'linux'}])
    const [amd64, arm64] = await Promise.all(index.manifests.map((m) => readJson<ImageManifest>(v1.layoutDir, m.digest)))
    const build = await readJson<ImageManifest>(v1.layoutDir, images.get('stacks[0].buildImage')!.digest)
    expect(build.layers[0]!.digest).toBe(amd64!.layers[0]!.digest)
    expect(arm64!.layers[0]!.digest).not.toBe(amd64!.layers[0]!.digest)
    // the arch-independent run config layer is one blob for both platforms
    expect(arm64!.layers[1]!.digest).toBe(amd64!.layers[1]!.digest)
    // kpack images share their base layers too
    const ctl = await readJson<ImageManifest>(v1.layoutDir, images.get('kpack.images.controller')!.digest)
    const hook = await readJson<ImageManifest>(v1.layoutDir, images.get('kpack.images.webhook')!.digest)
    expect(ctl.layers.slice(0, 2)).toEqual(hook.layers.slice(0, 2))
    expect(ctl.layers[2]!.digest).not.toBe(hook.layers[2]!.digest)
  })

  it('labels buildpackages the way kpack reads them', async () => {
    const java = byPath(v1).get('stores[0].sources[0].image')!
    const m = await readJson<ImageManifest>(v1.layoutDir, java.digest)
    const cfg = await readJson<{rootfs: {diff_ids: string[]}; config: {Labels: Record<string, string>}}>(v1.layoutDir, m.config.digest)
    const meta = JSON.parse(cfg.config.Labels['io.buildpacks.buildpackage.metadata']!) as {id: string; version: string; stacks: unknown}
    expect(meta).toMatchObject({id: 'example/java', version: '1.2.0', stacks: [{id: 'io.buildpacks.stacks.jammy'}]})
    const layers = JSON.parse(cfg.config.Labels['io.buildpacks.buildpack.layers']!) as Record<string, Record<string, {layerDiffID: string; order?: unknown}>>
    expect(Object.keys(layers)).toEqual(['example/java', 'example/jdk', 'example/maven'])
    expect(layers['example/java']!['1.2.0']!.order).toEqual([{group: [{id: 'example/jdk', version: '17.0.10'}, {id: 'example/maven', version: '3.9.6'}]}])
    expect(Object.values(layers).map((v) => Object.values(v)[0]!.layerDiffID)).toEqual(cfg.rootfs.diff_ids)
  })

  it('labels the lifecycle image for kpack 0.16 (a layer per OS) and 0.17 (ClusterLifecycle)', async () => {
    const lc = byPath(v1).get('lifecycle.image')!
    const m = await readJson<ImageManifest>(v1.layoutDir, lc.digest)
    const cfg = await readJson<{os: string; architecture: string; rootfs: {diff_ids: string[]}; config: {Labels: Record<string, string>}}>(v1.layoutDir, m.config.digest)
    const labels = cfg.config.Labels
    const [windows, linux] = cfg.rootfs.diff_ids
    expect(cfg.rootfs.diff_ids).toHaveLength(2)
    // kpack 0.16 (pkg/config/lifecycle_provider.go): one label per OS naming its layer by diff_id
    expect(labels.linux).toBe(linux)
    expect(labels.windows).toBe(windows)
    const apis = {
      buildpack: {deprecated: [], supported: ['0.7', '0.8', '0.9', '0.10', '0.11']},
      platform: {deprecated: [], supported: ['0.7', '0.8', '0.9', '0.10', '0.11', '0.12', '0.13']},
    }
    const api = {buildpack: '0.2', platform: '0.3'}
    expect(JSON.parse(labels['io.buildpacks.lifecycle.metadata']!)).toEqual({version: '0.20.4', api, apis})
    // kpack 0.17 (pkg/cnb/remote_lifecycle_reader.go, create_builder.go): the descriptor, the APIs,
    // and the linux lifecycle as the last layer of a linux/amd64 image
    expect(JSON.parse(labels['io.buildpacks.builder.metadata']!)).toEqual({lifecycle: {version: '0.20.4'}, api, apis})
    expect(JSON.parse(labels['io.buildpacks.lifecycle.apis']!)).toEqual(apis)
    expect(labels['io.buildpacks.lifecycle.version']).toBe('0.20.4')
    expect([cfg.os, cfg.architecture]).toEqual(['linux', 'amd64'])
    expect(cfg.rootfs.diff_ids.at(-1)).toBe(linux)
  })

  it('v2 differs from v1 exactly where a release changes', async () => {
    const [a, b] = [byPath(v1), byPath(v2)]
    expect(v2.bundle('r').metadata.version).toBe('1.1.0')
    expect(v2.bundle('r').kpack.version).toBe('0.17.2')
    const changed = [...a.keys()].filter((p) => a.get(p)!.digest !== b.get(p)!.digest)
    expect(changed).toEqual(['kpack.images.controller', 'kpack.images.webhook', 'stacks[0].buildImage', 'stacks[0].runImage', 'stores[0].sources[2].image'])
    for (const p of a.keys()) if (!changed.includes(p)) expect(b.get(p)).toEqual(a.get(p))
    // the stack: one new top layer on build and on each run platform, everything below shared
    const layers = async (r: SampleResult, digest: string) => (await readJson<ImageManifest>(r.layoutDir, digest)).layers.map((l) => l.digest)
    const b1 = await layers(v1, a.get('stacks[0].buildImage')!.digest)
    const b2 = await layers(v2, b.get('stacks[0].buildImage')!.digest)
    expect(b2.slice(0, -1)).toEqual(b1)
    const runs = async (r: SampleResult, digest: string) =>
      Promise.all((await readJson<ImageIndex>(r.layoutDir, digest)).manifests.map((m) => layers(r, m.digest)))
    const r1 = await runs(v1, a.get('stacks[0].runImage')!.digest)
    const r2 = await runs(v2, b.get('stacks[0].runImage')!.digest)
    for (const i of [0, 1]) {
      expect(r2[i]!.slice(0, -1)).toEqual(r1[i])
      expect(r1[i]).not.toContain(r2[i]!.at(-1))
    }
    expect(r2[0]!.at(-1)).toBe(b2.at(-1)) // build and run (amd64) get the same patch layer
    // the buildpack: one new layer
    const g1 = await layers(v1, a.get('stores[0].sources[2].image')!.digest)
    const g2 = await layers(v2, b.get('stores[0].sources[2].image')!.digest)
    expect(g1).toHaveLength(1)
    expect(g2).toHaveLength(1)
    expect(g2[0]).not.toBe(g1[0])
  })

  it('reuses blobs: generating again rewrites nothing', async () => {
    const dir = join(v1.layoutDir, 'blobs/sha256')
    const before = new Map(await Promise.all((await readdir(dir)).map(async (f) => [f, (await stat(join(dir, f))).mtimeMs] as const)))
    const again = await generateSample({version: 'v1', layoutDir: v1.layoutDir, cacheDir: cache})
    expect(again.images).toEqual(v1.images)
    for (const f of await readdir(dir)) expect((await stat(join(dir, f))).mtimeMs).toBe(before.get(f))
  })

  it('scales layer sizes', async () => {
    const layout = await tmp('scale')
    const half = await generateSample({version: 'v1', layoutDir: layout, scale: 0.5, cacheDir: false})
    expect(half.bytes).toBeGreaterThan(v1.bytes * 0.45)
    expect(half.bytes).toBeLessThan(v1.bytes * 0.55)
    expect(half.images[0]!.digest).not.toBe(v1.images[0]!.digest)
  })
})

describe('the layout in real tools', () => {
  let registry: Registry

  beforeAll(async () => {
    registry = await startRegistry({runDir: await tmp('registry')})
  })
  afterAll(async () => {
    await registry?.stop()
  })

  it('skopeo reads every image with the same bytes, and copies them to a registry keeping the digests', async () => {
    for (const r of [v1, v2]) {
      for (const img of r.images) {
        const raw = await run('skopeo', ['inspect', '--raw', `oci:${r.layoutDir}:${img.refName}`], {encoding: 'buffer'})
        expect(`sha256:${createHash('sha256').update(raw.stdout).digest('hex')}`).toBe(img.digest)
      }
    }
    for (const img of v1.images) {
      const dest = `${registry.host}/x/${img.repository}:${img.tag}`
      await run('skopeo', ['copy', '--all', '--quiet', '--dest-tls-verify=false', `oci:${v1.layoutDir}:${img.refName}`, `docker://${dest}`])
      const res = await fetch(`${registry.url}/v2/x/${img.repository}/manifests/${img.tag}`, {
        method: 'HEAD',
        headers: {accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'},
      })
      expect(res.status).toBe(200)
      expect(res.headers.get('docker-content-digest')).toBe(img.digest)
      expect(res.headers.get('content-type')).toBe(img.mediaType)
    }
  })
})
