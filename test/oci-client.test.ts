import {execFile} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setFlagsFromString} from 'node:v8'
import {promisify} from 'node:util'
import {runInNewContext} from 'node:vm'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {createRegistryClient, referrersTag, type OciClient} from '../src/oci/index.js'
import {sha256Digest} from '../src/oci/digest.js'
import {attachReferrer} from '../src/oci/referrers.js'
import {NEAR_ANSWER_MS, RANGED_MIN_BYTES} from '../src/oci/ranged.js'
import {isLoopbackRegistry} from '../src/oci/transport.js'
import {MediaTypes, type Repo} from '../src/oci/types.js'
import {freePort} from '../src/sandbox/procs.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'
import {startToxiproxy} from './helpers/toxiproxy.js'

const MiB = 1024 * 1024
const run = promisify(execFile)

/** A deterministic stream of `size` bytes in fresh 256 KiB chunks (never held whole). */
function generated(size: number, seed: number, tick?: () => void): Readable {
  const pattern = createHash('sha512').update(`seed-${seed}`).digest()
  let sent = 0
  return new Readable({
    read() {
      if (sent >= size) return void this.push(null)
      const n = Math.min(64 * 1024, size - sent)
      const chunk = Buffer.allocUnsafe(n)
      for (let i = 0; i < n; i += pattern.length) pattern.copy(chunk, i, 0, Math.min(pattern.length, n - i))
      chunk.writeUInt32BE(sent / (64 * 1024), 0)
      sent += n
      if (tick && sent % (4 * MiB) === 0) tick()
      this.push(chunk)
    },
  })
}

async function digestOfStream(s: Readable): Promise<{digest: string; size: number}> {
  const h = createHash('sha256')
  let size = 0
  for await (const c of s) {
    h.update(c as Buffer)
    size += (c as Buffer).length
  }
  return {digest: `sha256:${h.digest('hex')}`, size}
}

async function collect(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

// A collector we can call, so RSS shows what is live rather than what V8 has not collected yet.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/**
 * Peak growth of RSS, and peak of live ArrayBuffer memory (where Buffers live), while `fn` runs,
 * each read after a full collection whenever `tick` is called (the generator and the consumer
 * call it every 4 MiB): garbage not yet collected does not count, bytes the pipeline holds do.
 */
async function peakMemory(fn: (tick: () => void) => Promise<void>): Promise<{rss: number; buffers: number}> {
  gc()
  const start = process.memoryUsage()
  let rss = start.rss
  let buffers = 0
  const tick = (): void => {
    gc()
    const m = process.memoryUsage()
    rss = Math.max(rss, m.rss)
    buffers = Math.max(buffers, m.arrayBuffers)
  }
  await fn(tick)
  tick()
  return {rss: rss - start.rss, buffers}
}

async function pushBytes(client: OciClient, repo: Repo, bytes: Buffer): Promise<{digest: string; size: number; mediaType: string}> {
  const digest = sha256Digest(bytes)
  await client.putBlob(repo, digest, bytes.length, () => Readable.from([bytes]))
  return {digest, size: bytes.length, mediaType: MediaTypes.ociLayer}
}

describe('OCI client against a real distribution registry', () => {
  let dir: string
  let reg: Registry
  let client: OciClient
  let app: Repo
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-oci-client-'))
    reg = await startRegistry({runDir: dir, name: 'plain'})
    client = createRegistryClient({plainHttp: isLoopbackRegistry, tagPageSize: 2})
    app = {registry: reg.host, repository: 'kpi/app'}
  })
  afterAll(async () => {
    await client?.close()
    await reg?.stop()
    await rm(dir, {recursive: true, force: true})
  })

  it('pings the registry', async () => {
    await expect(client.ping(reg.host)).resolves.toBeUndefined()
  })

  it('streams a 50 MiB blob up and down without holding it in memory', async () => {
    const size = 50 * MiB
    const {digest} = await digestOfStream(generated(size, 1))
    expect(await client.hasBlob(app, digest)).toBe(false)
    // warm up first (undici's HTTP parser is WebAssembly, compiled and tiered up on first use),
    // so the measurement sees the transfer and not one-time allocations
    const warm = await digestOfStream(generated(8 * MiB, 2))
    await client.putBlob(app, warm.digest, warm.size, () => generated(8 * MiB, 2))
    await digestOfStream(await client.getBlob(app, warm.digest, warm.size))
    let opens = 0
    const up = await peakMemory((tick) => client.putBlob(app, digest, size, () => { opens++; return generated(size, 1, tick) }))
    expect(opens).toBe(1)
    expect(await client.hasBlob(app, digest)).toBe(true)
    let got = 0
    const down = await peakMemory(async (tick) => {
      const s = await client.getBlob(app, digest, size)
      await pipeline(s, new Writable({write(c: Buffer, _e, cb) {
        if (Math.floor((got + c.length) / (4 * MiB)) > Math.floor(got / (4 * MiB))) tick()
        got += c.length
        cb()
      }}))
    })
    expect(got).toBe(size)
    // streaming keeps memory far below the blob size (50 MiB); buffering would show it whole.
    // Parts fetched ahead by a download that waits for the network wait in a file, not in memory.
    expect(up.buffers).toBeLessThan(16 * MiB)
    expect(down.buffers).toBeLessThan(16 * MiB)
    expect(up.rss).toBeLessThan(24 * MiB)
    expect(down.rss).toBeLessThan(24 * MiB)
    // a registry on loopback is near: the blob came in one GET, no Range windows, no parts
    const gets = (await readFile(reg.logFile, 'utf8')).match(new RegExp(`"GET /v2/kpi/app/blobs/${digest} HTTP/1.1" \\d+`, 'g'))
    expect(gets).toEqual([`"GET /v2/kpi/app/blobs/${digest} HTTP/1.1" 200`])
  })

  it('gets a big blob from the same registry in Range windows once the path to it is long (every answer takes NEAR_ANSWER_MS or more)', async () => {
    const size = RANGED_MIN_BYTES + 3 * MiB
    const {digest} = await digestOfStream(generated(size, 3))
    await client.putBlob(app, digest, size, () => generated(size, 3))
    const toxi = await startToxiproxy(join(dir, 'toxiproxy'))
    const far = createRegistryClient({plainHttp: isLoopbackRegistry})
    try {
      const proxy = await toxi.proxy('registry', reg.host)
      for (const stream of ['upstream', 'downstream'] as const) await proxy.addToxic(`lag-${stream}`, {type: 'latency', stream, attributes: {latency: NEAR_ANSWER_MS}})
      const seen = (await readFile(reg.logFile, 'utf8')).length
      const got = await digestOfStream(await far.getBlob({registry: proxy.host, repository: app.repository}, digest, size))
      expect(got).toEqual({digest, size})
      const gets = (await readFile(reg.logFile, 'utf8')).slice(seen).match(new RegExp(`"GET /v2/kpi/app/blobs/${digest} HTTP/1.1" \\d+`, 'g'))!
      // the first window, then the rest (in one more GET or in parts): every one a 206
      expect(gets.length).toBeGreaterThanOrEqual(2)
      expect(new Set(gets.map((g) => g.slice(-3)))).toEqual(new Set(['206']))
    } finally {
      await far.close()
      await toxi.stop()
    }
  })

  it('pushes an OCI manifest and an index and gets them back byte-identical', async () => {
    const config = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: []}}))
    const cfg = await pushBytes(client, app, config)
    const layer = await pushBytes(client, app, randomBytes(4096))
    // unusual but valid formatting: a client that re-serialised would change the digest
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {...cfg, mediaType: MediaTypes.ociConfig}, layers: [layer],
      annotations: {'org.example.z': '1', 'org.example.a': '2'},
    }, null, 3) + '\n')
    const mDigest = await client.putManifest(app, 'v1', manifest, MediaTypes.ociManifest)
    expect(mDigest).toBe(sha256Digest(manifest))

    const byTag = await client.getManifest(app, 'v1')
    expect(byTag.bytes.equals(manifest)).toBe(true)
    expect(byTag.digest).toBe(mDigest)
    expect(byTag.mediaType).toBe(MediaTypes.ociManifest)
    const byDigest = await client.getManifest(app, mDigest)
    expect(byDigest.bytes.equals(manifest)).toBe(true)
    expect(await client.headManifest(app, 'v1')).toEqual({mediaType: MediaTypes.ociManifest, digest: mDigest, size: manifest.length})
    expect(await client.headManifest(app, 'nope')).toBeUndefined()

    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaTypes.ociIndex,
      manifests: [{mediaType: MediaTypes.ociManifest, digest: mDigest, size: manifest.length, platform: {architecture: 'amd64', os: 'linux'}}],
    }))
    const iDigest = sha256Digest(index)
    expect(await client.putManifest(app, iDigest, index, MediaTypes.ociIndex)).toBe(iDigest)
    const gotIndex = await client.getManifest(app, iDigest)
    expect(gotIndex.bytes.equals(index)).toBe(true)
    expect(gotIndex.mediaType).toBe(MediaTypes.ociIndex)

    // the blob comes back with its bytes
    expect((await collect(await client.getBlob(app, cfg.digest, cfg.size))).equals(config)).toBe(true)
  })

  it('writes what other tools read: skopeo sees the same manifest bytes', async () => {
    const {stdout} = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/kpi/app:v1`], {encoding: 'buffer'})
    const ours = await client.getManifest(app, 'v1')
    expect(Buffer.from(stdout).equals(ours.bytes)).toBe(true)
  })

  it('fails an upload whose stream is shorter than the blob size with kind integrity', async () => {
    const bytes = Buffer.from('short stream')
    const err = await client.putBlob(app, sha256Digest(bytes), bytes.length + 10, () => Readable.from([bytes])).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).kind).toBe('integrity')
    expect((err as KpiError).message).toBe(`blob ${reg.host}/kpi/app@${sha256Digest(bytes)}: the source stream did not give the ${bytes.length + 10} bytes the blob has`)
    // a stream with the right length but other bytes is refused by the registry's own check
    const err2 = await client.putBlob(app, sha256Digest('other bytes!'), bytes.length, () => Readable.from([bytes])).catch((e: unknown) => e)
    expect((err2 as KpiError).kind).toBe('integrity')
    expect((err2 as KpiError).message).toContain(sha256Digest('other bytes!'))
  })

  it('fails an upload with its source\'s own error when the source fails while the session opens', async () => {
    // the source is opened beside the session's POST: a small corrupt blob is read and found
    // wrong before the registry answers, with nobody yet reading the stream
    const bytes = Buffer.from('a source that fails early')
    const early = new KpiError('integrity', 'the source failed before the session opened')
    // failed as it opens: its 'error' comes once the upload waits for the registry's answer
    const err = await client.putBlob(app, sha256Digest(bytes), bytes.length, () => new Readable({read() {}}).destroy(early)).catch((e: unknown) => e)
    expect(err).toBe(early)
    expect(await client.hasBlob(app, sha256Digest(bytes))).toBe(false)
  })

  it('refuses a manifest pushed under a digest it does not hash to', async () => {
    const bytes = Buffer.from('{"schemaVersion":2}')
    await expect(client.putManifest(app, sha256Digest('other'), bytes, MediaTypes.ociManifest)).rejects.toMatchObject({kind: 'integrity'})
  })

  it('reports a manifest whose blobs are missing, naming the image', async () => {
    const missing = sha256Digest('not pushed')
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {mediaType: MediaTypes.ociConfig, digest: missing, size: 10}, layers: [],
    }))
    const err = await client.putManifest(app, 'broken', manifest, MediaTypes.ociManifest).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).kind).toBe('failed')
    expect((err as KpiError).message).toContain(`${reg.host}/kpi/app:broken`)
    expect((err as KpiError).message).toMatch(/blob or manifest it references is missing/)
  })

  it('reports unknown manifests and blobs as not-found, naming the image', async () => {
    const d = sha256Digest('nothing')
    await expect(client.getManifest(app, d)).rejects.toMatchObject({kind: 'not-found', message: expect.stringContaining(`${reg.host}/kpi/app@${d}`)})
    await expect(client.getManifest({registry: reg.host, repository: 'no/such'}, 'latest')).rejects.toMatchObject({kind: 'not-found'})
    await expect(client.getBlob(app, d)).rejects.toMatchObject({kind: 'not-found', message: expect.stringContaining(d)})
  })

  it('mounts a blob across repositories, and declines an unknown one', async () => {
    const blob = await pushBytes(client, app, randomBytes(1000))
    const other: Repo = {registry: reg.host, repository: 'kpi/other'}
    expect(await client.hasBlob(other, blob.digest)).toBe(false)
    expect(await client.mountBlob(other, blob.digest, app.repository)).toBe(true)
    expect(await client.hasBlob(other, blob.digest)).toBe(true)
    expect(await client.mountBlob(other, sha256Digest('unknown blob'), app.repository)).toBe(false)
  })

  it('fails the blob stream with kind integrity when the registry serves corrupt bytes', async () => {
    const bytes = randomBytes(64 * 1024)
    const blob = await pushBytes(client, app, bytes)
    const hex = blob.digest.slice(7)
    const file = join(reg.dataDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')
    const corrupt = Buffer.from(bytes)
    corrupt[1000] = corrupt[1000]! ^ 0xff
    await writeFile(file, corrupt)
    const stream = await client.getBlob(app, blob.digest, blob.size)
    const err = await collect(stream).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).kind).toBe('integrity')
    expect((err as KpiError).message).toContain(blob.digest)
    // copied into another repository, the corrupt source fails the upload and leaves nothing behind
    const dest: Repo = {registry: reg.host, repository: 'kpi/copy'}
    const copyErr = await client.putBlob(dest, blob.digest, blob.size, () => client.getBlob(app, blob.digest, blob.size)).catch((e: unknown) => e)
    expect(copyErr).toBeInstanceOf(KpiError)
    expect((copyErr as KpiError).kind).toBe('integrity')
    // the source's own check speaks, naming where the bad bytes came from
    expect((copyErr as KpiError).message).toContain(`blob ${reg.host}/kpi/app@${blob.digest}: content hashes to`)
    expect(await client.hasBlob(dest, blob.digest)).toBe(false)
    // a wrong expected size fails before any byte is trusted
    const ok = await pushBytes(client, app, randomBytes(100))
    await expect(client.getBlob(app, ok.digest, 99)).rejects.toMatchObject({kind: 'integrity'})
  })

  it('finds referrers through the fallback tag (distribution 2.8 has no referrers API)', async () => {
    const subject = await client.getManifest(app, 'v1')
    expect(await client.referrersApi(app)).toBe(false)
    expect(await client.referrers(app, subject.digest)).toEqual([])
    const empty = await pushBytes(client, app, Buffer.from('{}'))
    const sbom = await pushBytes(client, app, Buffer.from('{"sbom":true}'))
    const artifact = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaTypes.ociManifest, artifactType: 'application/vnd.example.sbom.v1+json',
      config: {mediaType: MediaTypes.ociEmpty, digest: empty.digest, size: empty.size},
      layers: [{...sbom, mediaType: 'application/vnd.example.sbom.v1+json'}],
      subject: {mediaType: subject.mediaType, digest: subject.digest, size: subject.bytes.length},
      annotations: {'org.example.kind': 'sbom'},
    }))
    const d = await attachReferrer(client, app, artifact, MediaTypes.ociManifest)
    expect(d).toBe(sha256Digest(artifact))
    // the registry keeps the manifest with its subject, byte for byte
    expect((await client.getManifest(app, d)).bytes.equals(artifact)).toBe(true)
    const refs = await client.referrers(app, subject.digest)
    expect(refs).toEqual([{mediaType: MediaTypes.ociManifest, digest: d, size: artifact.length,
      artifactType: 'application/vnd.example.sbom.v1+json', annotations: {'org.example.kind': 'sbom'}}])
    // attaching again does not duplicate the entry
    await attachReferrer(client, app, artifact, MediaTypes.ociManifest)
    expect(await client.referrers(app, subject.digest)).toHaveLength(1)
    expect(await client.listTags(app)).toContain(referrersTag(subject.digest))
  })

  it('lists tags across pages', async () => {
    const repo: Repo = {registry: reg.host, repository: 'kpi/tags'}
    const cfg = await pushBytes(client, repo, Buffer.from('{}'))
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: {...cfg, mediaType: MediaTypes.ociConfig}, layers: []}))
    const tags = ['a', 'b', 'c', 'd', 'e']
    for (const t of tags) await client.putManifest(repo, t, manifest, MediaTypes.ociManifest)
    // page size 2: three pages joined through the Link header
    expect((await client.listTags(repo)).sort()).toEqual(tags)
    expect(await client.listTags({registry: reg.host, repository: 'kpi/none'})).toEqual([])
  })

  it('reports an unreachable registry as kind network', async () => {
    const port = await freePort()
    const host = `127.0.0.1:${port}`
    const err = await client.ping(host).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).kind).toBe('network')
    expect((err as KpiError).message).toBe(`cannot reach registry ${host} (connection refused)`)
    await expect(client.getManifest({registry: host, repository: 'x'}, 'latest')).rejects.toMatchObject({kind: 'network'})
  })
})
