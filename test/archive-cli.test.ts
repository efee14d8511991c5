/**
 * The archive from the command line, as a user runs it: `kpi tar inspect`, `kpi tar verify`, and a
 * `kpi relocate --to-tar` killed with SIGKILL half-way and finished with --resume.
 */
import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {copyFile, mkdir, mkdtemp, open, readFile, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {relocateFromArchive, relocateFromOciLayout, relocateToArchive} from '../src/archive/actions.js'
import {openOciLayout} from '../src/archive/layout.js'
import {openArchive} from '../src/archive/reader.js'
import {blobMember} from '../src/archive/toc.js'
import {loadBundle} from '../src/bundle/index.js'
import {generateSample, writeBundleDir} from '../src/imagegen/index.js'
import {createRegistryClient} from '../src/oci/client.js'
import {isLoopbackRegistry} from '../src/oci/transport.js'
import type {ProgressEvent} from '../src/progress/events.js'
import {SMALL_BLOB_BYTES} from '../src/relocate/upload-pool.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi, startKpi} from './helpers/cli.js'
import {takesDirectIo} from './helpers/direct-io.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const sha = async (f: string) => createHash('sha256').update(await readFile(f)).digest('hex')
let dir: string
let file: string

beforeAll(async () => {
  // the CLI runs from dist/ (npm test builds it first; alone, run npm run build): never rebuilt
  // here, where other test files run it at the same time
  expect(existsSync(join(root, 'dist/kpi.cjs')), 'npm run build first').toBe(true)
  dir = await mkdtemp(join(tmpdir(), 'kpi-archive-cli-'))
  const layout = join(dir, 'layout')
  const v1 = await generateSample({version: 'v1', layoutDir: layout})
  const bundle = await loadBundle(await writeBundleDir(v1.bundle('registry.example', 'sample'), join(dir, 'bundle')))
  file = join(dir, 'v1.tar')
  await relocateToArchive({bundle, file, source: (await openOciLayout(layout)).source})
}, 300_000)

afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('kpi tar inspect', () => {
  it('shows bundle, images, platforms and sizes', async () => {
    const r = await kpi(['tar', 'inspect', file])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^build-service \S+ \(Bundle\) in .*v1\.tar, [\d.]+ [KM]i?B/m)
    expect(r.stdout).toMatch(/stacks\[0\]\.runImage .*registry\.example\/sample\//)
    expect(r.stdout).toMatch(/linux\/amd64, linux\/arm64/)
    expect(r.stdout).toMatch(/\d+ images, \d+ manifests, \d+ blobs/)
    const j = await kpi(['tar', 'inspect', file, '--json'])
    expect(j.code).toBe(0)
    const out = JSON.parse(j.stdout) as {ok: boolean; images: Array<{path: string; platforms: string[]}>; bundle: {files: Array<{path: string}>}}
    expect(out.ok).toBe(true)
    expect(out.images.find((i) => i.path === 'stacks[0].runImage')!.platforms.sort()).toEqual(['linux/amd64', 'linux/arm64'])
    expect(out.bundle.files.map((f) => f.path)).toEqual(['bundle.yaml', 'README.txt'])
  })

  it('fails cleanly on a file that is not an archive', async () => {
    const line = expectCleanFailure(await kpi(['tar', 'inspect', join(dir, 'nope.tar')]))
    expect(line).toMatch(/archive .*nope\.tar not found/)
    const part = await kpi(['tar', 'inspect', join(dir, 'nope.tar.part001')])
    expect(expectCleanFailure(part)).toBe(`Error: archive ${join(dir, 'nope.tar.part001')} not found: check the path`)
    expect(part.code).toBe(7)
    const notTar = join(dir, 'bundle', 'README.txt')
    expect(expectCleanFailure(await kpi(['tar', 'inspect', notTar]))).toMatch(/bad tar header|truncated/)
  })
})

describe('kpi relocate --to-tar', () => {
  it('refuses a directory as the archive before contacting any registry', async () => {
    const target = join(dir, 'out-dir')
    await mkdir(target)
    const r = await kpi(['relocate', '-b', join(dir, 'bundle'), '--to-tar', target])
    expect(expectCleanFailure(r)).toBe(`Error: cannot write archive ${target}: ${target} is a directory: name the archive file to write, e.g. ${join(target, 'bundle.tar')}`)
    expect(r.code).toBe(3)
  })

  it('refuses --from-tar with --to-tar as a usage error', async () => {
    const r = await kpi(['relocate', '--from-tar', file, '--to-tar', join(dir, 'copy.tar')])
    expect(expectCleanFailure(r)).toBe('Error: --from-tar goes with --to-repo: an archive is read into a registry; to copy the archive, copy its file (or all its parts)')
    expect(r.code).toBe(2)
    expect(existsSync(join(dir, 'copy.tar'))).toBe(false)
  })
})

describe('kpi tar verify', () => {
  it('passes a good archive and names the damaged blob and its images otherwise', async () => {
    const ok = await kpi(['tar', 'verify', file])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/^ok: build-service .* manifests and \d+ blobs .* match their digests/m)

    const bad = join(dir, 'bad.tar')
    await copyFile(file, bad)
    const a = await openArchive(bad)
    const img = a.toc.images.find((i) => i.path === 'lifecycle.image')!
    const layer = img.blobs.filter((b) => b.size > 10_000 && a.toc.images.filter((i) => i.blobs.some((x) => x.digest === b.digest)).length === 1)[0]!
    const m = a.members.get(blobMember(layer.digest))!
    await a.close()
    const f = await open(bad, 'r+')
    await f.write(Buffer.from('X'), 0, 1, m.offset + 1234)
    await f.close()
    const r = await kpi(['tar', 'verify', bad])
    expect(r.code).toBe(8)
    expect(r.stderr).toContain(`damaged: blob ${layer.digest}`)
    expect(r.stderr).toMatch(/used by lifecycle\.image/)
    expect(expectCleanFailure(r)).toMatch(new RegExp(`is damaged: 1 problem, first ${layer.digest} \\(lifecycle\\.image\\)`))
    const j = await kpi(['tar', 'verify', bad, '--json'])
    expect(j.code).toBe(8)
    expect(JSON.parse(j.stdout)).toMatchObject({ok: false, problems: [{digest: layer.digest, images: ['lifecycle.image']}]})
  })
})

describe('kpi relocate --to-tar killed and resumed', () => {
  let reg: Registry
  let whole: string
  afterAll(async () => {
    await reg?.stop()
  })

  it('gives the same bytes as an uninterrupted run', async () => {
    reg = await startRegistry({runDir: dir, name: 'src'})
    // a bigger sample so the run lasts long enough to be killed half-way
    const layout = join(dir, 'layout-big')
    const big = await generateSample({version: 'v1', layoutDir: layout, scale: 12})
    const bundleDir = await writeBundleDir(big.bundle(reg.host, 'sample'), join(dir, 'bundle-big'))
    const loaded = await loadBundle(bundleDir)
    const client = createRegistryClient({plainHttp: isLoopbackRegistry})
    try {
      await relocateFromOciLayout({bundle: loaded, dir: layout, toRepo: reg.host, client})
    } finally {
      await client.close()
    }
    whole = join(dir, 'big-whole.tar')
    const args = (f: string) => ['relocate', '-b', bundleDir, '--to-tar', f, '--plain-http', reg.host]
    const first = await kpi(args(whole))
    expect(first.code, first.stderr).toBe(0)
    const total = (await stat(whole)).size

    const killed = join(dir, 'big-killed.tar')
    const {child, done} = startKpi(args(killed))
    let size = 0
    for (let i = 0; i < 3000 && size < total * 0.4; i++) {
      await sleep(5)
      size = await stat(`${killed}.partial`).then((s) => s.size, () => 0)
    }
    child.kill('SIGKILL')
    const r = await done
    expect(r.signal).toBe('SIGKILL')
    expect(existsSync(killed)).toBe(false)
    const partial = (await stat(`${killed}.partial`)).size
    expect(partial).toBeGreaterThan(0)
    expect(partial).toBeLessThan(total)

    const resumed = await kpi([...args(killed), '--resume'])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(existsSync(`${killed}.partial`)).toBe(false)
    expect(await sha(killed)).toBe(await sha(whole))
  })

  it('--page-cache writes the same bytes through the page cache; by default around it where the file system allows', async () => {
    const args = (f: string, ...more: string[]) => ['relocate', '-b', join(dir, 'bundle-big'), '--to-tar', f, '--plain-http', reg.host, '--json', ...more]
    const cached = join(dir, 'big-cached.tar')
    const direct = join(dir, 'big-direct.tar')
    const c = await kpi(args(cached, '--page-cache'))
    const d = await kpi(args(direct))
    expect(c.code, c.stderr).toBe(0)
    expect(d.code, d.stderr).toBe(0)
    expect(JSON.parse(c.stdout).archive.direct).toBe(false)
    expect(JSON.parse(d.stdout).archive.direct).toBe(await takesDirectIo(dir))
    expect(await sha(cached)).toBe(await sha(whole))
    expect(await sha(direct)).toBe(await sha(whole))
  })

  it('reads that archive into a registry largest layers first, one upload at a time: none is left to move alone at the end', async () => {
    const events: ProgressEvent[] = []
    // a registry of its own: into the source's, the layers would be mounted, not sent
    const target = await startRegistry({runDir: dir, name: 'imported'})
    const client = createRegistryClient({plainHttp: isLoopbackRegistry})
    try {
      await relocateFromArchive({file: whole, toRepo: `${target.host}/imported`, client, uploads: 1, onEvent: (e) => events.push(e)})
    } finally {
      await client.close()
      await target.stop()
    }
    // layers in the order their uploads finished, which one at a time is the order they started;
    // the first started as it came, before the others were queued behind it
    const layers = events.flatMap((e) => (e.type === 'blob' && e.action === 'copied' && e.size >= SMALL_BLOB_BYTES ? [e.size] : []))
    expect(layers.length).toBeGreaterThan(3)
    const rest = layers.slice(1)
    expect(rest).toEqual([...rest].sort((a, b) => b - a))
  })
})

describe('the air gap through kpi relocate', () => {
  let sb: Sandbox
  afterAll(async () => {
    await sb?.stop()
  })

  it('--to-tar, then --from-tar with the public registry stopped, gives the lock registry-to-registry gives; a delta follows', async () => {
    sb = await startSandbox({runDir: join(dir, 'sandbox')})
    const tarV1 = join(dir, 'sb-v1.tar')
    const w = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-tar', tarV1, '--json'], sb.env)
    expect(w.code, w.stderr).toBe(0)
    expect(JSON.parse(w.stdout.trim().split('\n').pop()!)).toMatchObject({ok: true, archive: {files: [tarV1]}})

    await sb.public.stop()
    const fromTar = join(dir, 'lock-from-tar.yaml')
    const imp = await kpi(['relocate', '--from-tar', tarV1, '--to-repo', sb.airgapPrefix, '--lock-output', fromTar, '--ca-cert', sb.caFile], sb.env)
    expect(imp.code, imp.stderr).toBe(0)
    await sb.public.restart()

    const direct = join(dir, 'lock-direct.yaml')
    const r2r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', direct, '--ca-cert', sb.caFile], sb.env)
    expect(r2r.code, r2r.stderr).toBe(0)
    expect(await readFile(fromTar, 'utf8')).toBe(await readFile(direct, 'utf8'))

    const delta = join(dir, 'sb-delta.tar')
    const d = await kpi(['relocate', '-b', sb.bundles.v2!, '--to-tar', delta, '--since', sb.bundles.v1!], sb.env)
    expect(d.code, d.stderr).toBe(0)
    expect((await stat(delta)).size).toBeLessThan((await stat(tarV1)).size / 2)
    await sb.public.stop()
    const lock2 = join(dir, 'lock-v2.yaml')
    const imp2 = await kpi(['relocate', '--from-tar', delta, '--to-repo', sb.airgapPrefix, '--lock-output', lock2, '--ca-cert', sb.caFile], sb.env)
    expect(imp2.code, imp2.stderr).toBe(0)
    const lock = await loadBundle(lock2)
    expect(lock.bundle.kind).toBe('BundleLock')
    expect(lock.bundle.metadata.version).toBe(sb.bundle.v2!.metadata.version)
  }, 300_000)
})
