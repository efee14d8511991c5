import {mkdtemp, rm} from 'node:fs/promises'
import {createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {tunnelTo} from './helpers/proxy.js'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {createRegistryClient, type OciClient} from '../src/oci/client.js'
import {sha256Digest} from '../src/oci/digest.js'
import {createRequester} from '../src/oci/request.js'
import {RANGED_MIN_BYTES, WINDOW_BYTES} from '../src/oci/ranged.js'
import {MediaTypes, type Repo} from '../src/oci/types.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'

type Fault = 'forward' | 'reset' | {status: number; headers?: Record<string, string>}

interface Seen {
  method: string
  url: string
  authorization?: string
}

interface TestServer {
  server: Server
  port: number
  seen: Seen[]
  close(): Promise<void>
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    seen.push({method: req.method!, url: req.url!, authorization: req.headers.authorization})
    handler(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    server, seen, port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** Forward a request to `target` (host:port), body and response streamed, the answer with `extra` headers. */
function forward(req: IncomingMessage, res: ServerResponse, target: string, path = req.url!, extra: Record<string, string> = {}): void {
  const [hostname, port] = target.split(':')
  const up = httpRequest({hostname, port: Number(port), method: req.method, path, headers: req.headers}, (r) => {
    res.writeHead(r.statusCode!, {...r.headers, ...extra})
    r.pipe(res)
  })
  up.on('error', () => res.destroy())
  req.pipe(up)
}

/**
 * A loopback reverse proxy in front of the registry that injects faults: `decide` sees every
 * request and says forward it, answer with a status, or drop the connection.
 */
async function faultyProxy(registry: string, decide: (req: IncomingMessage) => Fault): Promise<TestServer> {
  return listen((req, res) => {
    const f = decide(req)
    if (f === 'forward') return forward(req, res, registry)
    // read the request body first, as a server that failed late would
    req.resume()
    req.on('end', () => {
      if (f === 'reset') return void req.socket.destroy()
      res.writeHead(f.status, {'content-type': 'application/json', ...f.headers})
      res.end(JSON.stringify({errors: [{code: 'UNAVAILABLE', message: 'injected fault'}]}))
    })
  })
}

describe('OCI client transport: retries, redirects, proxies', () => {
  let dir: string
  let reg: Registry
  let secured: Registry
  const servers: TestServer[] = []
  const clients: OciClient[] = []
  const client = (o: Parameters<typeof createRegistryClient>[0] = {}): OciClient => {
    const c = createRegistryClient({plainHttp: () => true, credentials: async () => undefined, retryPolicy: {baseMs: 5, maxMs: 2000}, ...o})
    clients.push(c)
    return c
  }
  const serve = async (s: Promise<TestServer>): Promise<TestServer> => {
    const t = await s
    servers.push(t)
    return t
  }

  let repo: Repo
  let manifestDigest: string
  let blob: Buffer
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-oci-transport-'))
    ;[reg, secured] = await Promise.all([
      startRegistry({runDir: dir, name: 'plain'}),
      startRegistry({runDir: dir, name: 'secured', auth: {username: 'alice', password: 'transport-pw'}}),
    ])
    // seed an image directly on the registry
    const c = client()
    repo = {registry: reg.host, repository: 'net/app'}
    blob = Buffer.from('config of the seeded image')
    await c.putBlob(repo, sha256Digest(blob), blob.length, () => Readable.from([blob]))
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {mediaType: MediaTypes.ociConfig, digest: sha256Digest(blob), size: blob.length}, layers: []}))
    manifestDigest = await c.putManifest(repo, 'v1', manifest, MediaTypes.ociManifest)
  })
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await Promise.all(servers.splice(0).map((s) => s.close()))
  })
  afterAll(async () => {
    await Promise.all([reg?.stop(), secured?.stop()])
    await rm(dir, {recursive: true, force: true})
  })

  it('retries 503 twice and then succeeds', async () => {
    let manifestGets = 0
    const proxy = await serve(faultyProxy(reg.host, (req) =>
      req.method === 'GET' && req.url!.includes('/manifests/') && ++manifestGets <= 2 ? {status: 503} : 'forward'))
    const host = `127.0.0.1:${proxy.port}`
    const m = await client().getManifest({registry: host, repository: repo.repository}, 'v1')
    expect(m.digest).toBe(manifestDigest)
    expect(manifestGets).toBe(3)
  })

  it('waits as long as Retry-After says on 429', async () => {
    let heads = 0
    const proxy = await serve(faultyProxy(reg.host, (req) =>
      req.method === 'HEAD' && ++heads === 1 ? {status: 429, headers: {'retry-after': '1'}} : 'forward'))
    const start = Date.now()
    expect(await client().hasBlob({registry: `127.0.0.1:${proxy.port}`, repository: repo.repository}, sha256Digest(blob))).toBe(true)
    expect(Date.now() - start).toBeGreaterThanOrEqual(950)
    expect(heads).toBe(2)
  })

  it('retries a connection reset', async () => {
    let gets = 0
    const proxy = await serve(faultyProxy(reg.host, (req) =>
      req.method === 'GET' && req.url!.includes('/blobs/') && ++gets === 1 ? 'reset' : 'forward'))
    const s = await client().getBlob({registry: `127.0.0.1:${proxy.port}`, repository: repo.repository}, sha256Digest(blob), blob.length)
    const chunks: Buffer[] = []
    for await (const c of s) chunks.push(c as Buffer)
    expect(Buffer.concat(chunks).equals(blob)).toBe(true)
    expect(gets).toBe(2)
  })

  it('restarts a failed upload from the beginning with a fresh stream', async () => {
    let puts = 0
    const proxy = await serve(faultyProxy(reg.host, (req) =>
      req.method === 'PUT' && req.url!.includes('/blobs/uploads/') && ++puts === 1 ? {status: 503} : 'forward'))
    const r = {registry: `127.0.0.1:${proxy.port}`, repository: 'net/upload'}
    const bytes = Buffer.alloc(300_000, 7)
    let opens = 0
    await client().putBlob(r, sha256Digest(bytes), bytes.length, () => { opens++; return Readable.from([bytes.subarray(0, 100_000), bytes.subarray(100_000)]) })
    expect(opens).toBe(2)
    expect(puts).toBe(2)
    expect(await client().hasBlob({registry: reg.host, repository: 'net/upload'}, sha256Digest(bytes))).toBe(true)
  })

  it('waits as long as Retry-After says when the PUT of a blob upload is answered 429', async () => {
    // a rate limit on uploads: every PUT within a second of the first is refused again
    let firstPut: number | undefined
    let puts = 0
    const proxy = await serve(faultyProxy(reg.host, (req) => {
      if (req.method !== 'PUT' || !req.url!.includes('/blobs/uploads/')) return 'forward'
      puts++
      firstPut ??= Date.now()
      return Date.now() - firstPut < 1000 ? {status: 429, headers: {'retry-after': '1'}} : 'forward'
    }))
    const r = {registry: `127.0.0.1:${proxy.port}`, repository: 'net/ratelimited'}
    const bytes = Buffer.alloc(50_000, 9)
    const start = Date.now()
    expect(await client().putBlob(r, sha256Digest(bytes), bytes.length, () => Readable.from([bytes]))).toBe('uploaded')
    expect(Date.now() - start).toBeGreaterThanOrEqual(950)
    expect(puts).toBe(2)
    expect(await client().hasBlob({registry: reg.host, repository: 'net/ratelimited'}, sha256Digest(bytes))).toBe(true)
  })

  it('uploads an empty blob again when the kept-alive connection its PUT goes out on was just closed', async () => {
    // the second PUT on a connection meets a registry that has just closed it
    const puts = new WeakMap<Socket, number>()
    const closing = await serve(listen((req, res) => {
      if (req.method !== 'PUT') return forward(req, res, reg.host)
      const n = (puts.get(req.socket) ?? 0) + 1
      puts.set(req.socket, n)
      if (n === 2) return void req.socket.destroy()
      forward(req, res, reg.host)
    }))
    const c = client()
    const registry = `127.0.0.1:${closing.port}`
    const empty = sha256Digest(Buffer.alloc(0))
    let opens = 0
    const open = (): Readable => { opens++; return Readable.from([]) }
    expect(await c.putBlob({registry, repository: 'net/empty-a'}, empty, 0, open)).toBe('uploaded')
    expect(await c.putBlob({registry, repository: 'net/empty-b'}, empty, 0, open)).toBe('uploaded')
    // the second upload restarted with a fresh source on a new connection
    expect(opens).toBe(3)
    expect(closing.seen.filter((s) => s.method === 'PUT')).toHaveLength(3)
    expect(await c.hasBlob({registry: reg.host, repository: 'net/empty-b'}, empty)).toBe(true)
  })

  it('a registry silent for the timeout is asked once more on a fresh connection, not `retries` times', async () => {
    // the API root answers; manifest requests are read and never answered
    const silent = await serve(listen((req, res) => {
      if (!req.url!.includes('/manifests/')) return forward(req, res, reg.host)
      req.resume()
    }))
    const host = `127.0.0.1:${silent.port}`
    const e = await client({timeoutMs: 300}).getManifest({registry: host, repository: repo.repository}, 'v1').catch((err: unknown) => err)
    expect(e).toBeInstanceOf(KpiError)
    expect((e as KpiError).kind).toBe('timeout')
    expect((e as KpiError).message).toBe(`registry ${host} stopped answering (no response in time)`)
    expect(silent.seen.filter((s) => s.url.includes('/manifests/'))).toHaveLength(2)
  })

  it('gives up after the retries with kind failed naming the image', async () => {
    const proxy = await serve(faultyProxy(reg.host, (req) => req.url!.includes('/manifests/') ? {status: 503} : 'forward'))
    const host = `127.0.0.1:${proxy.port}`
    const e = await client({retries: 2}).getManifest({registry: host, repository: repo.repository}, 'v1').catch((err: unknown) => err)
    expect(e).toBeInstanceOf(KpiError)
    expect((e as KpiError).kind).toBe('failed')
    expect((e as KpiError).message).toBe(`registry ${host} answered 503 for manifest ${host}/net/app:v1: injected fault`)
    expect(proxy.seen.filter((s) => s.url.includes('/manifests/'))).toHaveLength(3)
  })

  /**
   * A registry (a proxy in front of `secured`) that redirects every blob GET to "storage" on
   * another port, which serves the blob (and Range, as S3 does) from the registry itself.
   */
  const redirectingToStorage = async (digest: string) => {
    const basic = `Basic ${Buffer.from('alice:transport-pw').toString('base64')}`
    const ranges: Array<string | undefined> = []
    const storage = await serve(listen((req, res) => {
      ranges.push(req.headers.range)
      const up = httpRequest({hostname: '127.0.0.1', port: Number(secured.host.split(':')[1]), path: `/v2/net/app/blobs/${digest}`, headers: {authorization: basic, ...(req.headers.range ? {range: req.headers.range} : {})}}, (r) => {
        res.writeHead(r.statusCode!, {'content-length': r.headers['content-length'], ...(r.headers['content-range'] ? {'content-range': r.headers['content-range']} : {})})
        r.pipe(res)
      })
      up.end()
      req.resume()
    }))
    const proxy = await serve(listen((req, res) => {
      if (req.method === 'GET' && req.url!.includes('/blobs/sha256:')) {
        res.writeHead(307, {location: `http://127.0.0.1:${storage.port}/storage/${digest}?sig=abc`}).end()
        return
      }
      forward(req, res, secured.host)
    }))
    return {basic, ranges, storage, proxy}
  }
  const creds = {username: 'alice', password: 'transport-pw'}
  /** `bytes` pushed to `secured`, then read back through a registry that redirects to storage */
  const viaStorage = async (bytes: Buffer) => {
    const digest = sha256Digest(bytes)
    const r = await redirectingToStorage(digest)
    await client({credentials: async () => creds}).putBlob({registry: secured.host, repository: 'net/app'}, digest, bytes.length, () => Readable.from([bytes]))
    const s = await client({credentials: async () => creds}).getBlob({registry: `127.0.0.1:${r.proxy.port}`, repository: 'net/app'}, digest, bytes.length)
    const chunks: Buffer[] = []
    for await (const chunk of s) chunks.push(chunk as Buffer)
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true)
    return r
  }

  it('follows a blob redirect to storage without sending the registry credentials there', async () => {
    const {basic, storage, proxy} = await viaStorage(blob)
    expect(storage.seen).toHaveLength(1)
    expect(storage.seen[0]!.authorization).toBeUndefined()
    // the registry itself did get the credentials
    expect(proxy.seen.find((r) => r.url.includes('/blobs/'))?.authorization).toBe(basic)
  })

  it('fetches a big blob redirected to storage in ranges from the storage, still without the registry credentials', async () => {
    const big = Buffer.alloc(RANGED_MIN_BYTES + (3 << 20))
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i)
    const {ranges, storage, proxy} = await viaStorage(big)
    // the Range went along with the redirect, and the rest of the blob came from the storage too
    expect(ranges[0]).toBe(`bytes=0-${WINDOW_BYTES - 1}`)
    expect(ranges.length).toBeGreaterThan(1)
    expect(ranges.every((r) => r?.startsWith('bytes='))).toBe(true)
    expect(storage.seen.every((r) => r.authorization === undefined)).toBe(true)
    // only the first GET asked the registry; the parts went straight to the storage URL
    expect(proxy.seen.filter((r) => r.method === 'GET' && r.url.includes('/blobs/'))).toHaveLength(1)
  })

  /** A server on another port (another origin) that records what it is sent and answers an empty page. */
  const elsewhere = () => serve(listen((_req, res) => void res.writeHead(200, {'content-type': 'application/json'}).end('{"tags":[],"manifests":[]}')))

  it('follows a tag page the registry links on itself, and refuses one linked on another origin without sending it anything', async () => {
    const c = client({credentials: async () => creds})
    const config = Buffer.from('config of the linked tags')
    const r = {registry: secured.host, repository: 'net/links'}
    await c.putBlob(r, sha256Digest(config), config.length, () => Readable.from([config]))
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {mediaType: MediaTypes.ociConfig, digest: sha256Digest(config), size: config.length}, layers: []}))
    for (const tag of ['a', 'b']) await c.putManifest(r, tag, manifest, MediaTypes.ociManifest)
    const other = await elsewhere()
    // the first page links the next on the registry itself (absolute), that one to another port
    const proxy = await serve(listen((req, res) => {
      if (!req.url!.includes('/tags/list')) return forward(req, res, secured.host)
      const next = req.url!.includes('last=') ? `http://127.0.0.1:${other.port}/v2/net/links/tags/list?last=b` : `http://127.0.0.1:${proxy.port}/v2/net/links/tags/list?last=a`
      forward(req, res, secured.host, req.url!, {link: `<${next}>; rel="next"`})
    }))
    const host = `127.0.0.1:${proxy.port}`
    const e = await c.listTags({registry: host, repository: 'net/links'}).catch((err: unknown) => err)
    expect(e).toBeInstanceOf(KpiError)
    expect(e).toMatchObject({kind: 'failed', message: `registry ${host} sent kpi to http://127.0.0.1:${other.port} for the next page of tags of ${host}/net/links, another origin than the registry's; kpi sends the registry's credentials to the registry alone`})
    expect(String(e)).not.toContain('transport-pw')
    // both pages on the registry were asked for, with its credentials; the other origin got nothing
    const pages = proxy.seen.filter((s) => s.url.includes('/tags/list'))
    expect(pages.map((s) => s.url)).toEqual(['/v2/net/links/tags/list?n=1000', '/v2/net/links/tags/list?last=a'])
    expect(pages.every((s) => s.authorization === `Basic ${Buffer.from('alice:transport-pw').toString('base64')}`)).toBe(true)
    expect(other.seen).toEqual([])
  })

  it('refuses a referrers page linked on another host, port or scheme, without sending the credentials there', async () => {
    const other = await elsewhere()
    let next = ''
    // the referrers API (distribution 2.8 has none) answered by the proxy, its Link header as set
    const proxy = await serve(listen((req, res) => {
      if (!req.url!.includes('/referrers/')) return forward(req, res, secured.host)
      res.writeHead(200, {'content-type': MediaTypes.ociIndex, link: `<${next}>; rel="next"`}).end('{"schemaVersion":2,"manifests":[]}')
    }))
    const host = `127.0.0.1:${proxy.port}`
    const subject = sha256Digest(blob)
    const targets = [
      `http://127.0.0.2:${proxy.port}/v2/net/app/referrers/${subject}?page=2`,
      `http://127.0.0.1:${other.port}/steal`,
      `https://127.0.0.1:${proxy.port}/v2/net/app/referrers/${subject}?page=2`,
    ]
    for (const target of targets) {
      next = target
      const e = await client({credentials: async () => creds}).referrers({registry: host, repository: 'net/app'}, subject).catch((err: unknown) => err)
      expect(e).toMatchObject({kind: 'failed', message: `registry ${host} sent kpi to ${new URL(target).origin} for the next page of referrers of ${host}/net/app@${subject}, another origin than the registry's; kpi sends the registry's credentials to the registry alone`})
    }
    expect(proxy.seen.filter((s) => s.url.includes('/referrers/'))).toHaveLength(3)
    expect(other.seen).toEqual([])
  })

  it('never sends a registry its credentials to another origin, whatever URL a caller hands over', async () => {
    const other = await elsewhere()
    const http = createRequester({plainHttp: () => true, credentials: async () => creds, retryPolicy: {baseMs: 5}})
    try {
      const e = await http.send(secured.host, {method: 'GET', url: `http://127.0.0.1:${other.port}/v2/net/app/tags/list`, scopes: ['repository:net/app:pull']}).catch((err: unknown) => err)
      expect(e).toMatchObject({kind: 'failed', message: `registry ${secured.host} sent kpi to http://127.0.0.1:${other.port} for a GET request, another origin than the registry's; kpi sends the registry's credentials to the registry alone`})
      // the registry itself still gets them
      const res = await http.send(secured.host, {method: 'GET', url: `${http.base(secured.host)}/v2/`, scopes: []})
      expect(res.statusCode).toBe(200)
      await res.body.dump()
    } finally {
      await http.close()
    }
    expect(other.seen).toEqual([])
  })

  it('rejects an upload refused in an answer a reset cuts short, with the refusal and no uncaught exception', async () => {
    // the PUT is refused at once, before its body is read, and the refusal's body never arrives
    // whole: the reset comes while the client waits for the source to say its piece
    const refusing = await serve(listen((req, res) => {
      if (req.method !== 'PUT') return forward(req, res, reg.host)
      res.writeHead(403, {'content-type': 'application/json', 'content-length': '1000'})
      res.write('{"errors":[')
      setTimeout(() => req.socket.resetAndDestroy(), 20)
    }))
    const registry = `127.0.0.1:${refusing.port}`
    const digest = `sha256:${'b'.repeat(64)}`
    // a source still giving bytes, slowly (a download from elsewhere)
    const slow = new Readable({read() { setTimeout(() => this.push(Buffer.alloc(1024)), 5) }})
    const uncaught: unknown[] = []
    const onUncaught = (e: unknown): void => void uncaught.push(e)
    process.on('uncaughtException', onUncaught)
    try {
      const e = await client({retries: 0}).putBlob({registry, repository: 'net/refused'}, digest, 1 << 20, () => slow).catch((err: unknown) => err)
      expect(e).toMatchObject({kind: 'auth', message: `registry ${registry} denied push of blob ${registry}/net/refused@${digest}`})
      // past the reset and the wait for the source
      await new Promise((r) => setTimeout(r, 200))
    } finally {
      process.off('uncaughtException', onUncaught)
    }
    expect(uncaught).toEqual([])
    expect(refusing.seen.filter((s) => s.method === 'PUT')).toHaveLength(1)
    expect(slow.destroyed).toBe(true)
  })

  it('goes through an HTTP proxy, except for loopback and NO_PROXY hosts', async () => {
    // a forward proxy that knows the name registry.kpi.test, which no DNS resolves
    const name = `registry.kpi.test:${reg.host.split(':')[1]}`
    const fwd = await serve(listen((req, res) => {
      const u = new URL(req.url!)
      if (u.host !== name) return void res.writeHead(502).end()
      forward(req, res, reg.host, u.pathname + u.search)
    }))
    const proxy = {httpProxy: `http://127.0.0.1:${fwd.port}`}
    const viaProxy = client({proxy})
    const m = await viaProxy.getManifest({registry: name, repository: repo.repository}, 'v1')
    expect(m.digest).toBe(manifestDigest)
    expect(fwd.seen.map((s) => s.url)).toContain(`http://${name}/v2/net/app/manifests/v1`)

    // loopback never goes through the proxy
    const before = fwd.seen.length
    await viaProxy.getManifest(repo, 'v1')
    expect(fwd.seen.length).toBe(before)

    // NO_PROXY sends registry.kpi.test direct, where its name does not resolve
    const e = await client({proxy: {...proxy, noProxy: 'kpi.test'}}).ping(name).catch((err: unknown) => err)
    expect(e).toMatchObject({kind: 'network', message: `cannot reach registry ${name} (host not found)`})
    expect(fwd.seen.length).toBe(before)
  })

  it('tunnels HTTPS through the proxy with CONNECT, verifying the registry with the private CA', async () => {
    const tlsReg = await startRegistry({runDir: dir, name: 'behind-proxy', tls: true, hostnames: ['registry.kpi.test']})
    try {
      const port = tlsReg.host.split(':')[1]!
      const name = `registry.kpi.test:${port}`
      const tunnels: string[] = []
      const fwd = await serve(listen((_req, res) => void res.writeHead(405).end()))
      fwd.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
        tunnels.push(req.url!)
        if (req.url !== name) return void socket.end('HTTP/1.1 403 Forbidden\r\n\r\n')
        tunnelTo(Number(port), socket, head)
      })
      const proxy = {httpsProxy: `http://127.0.0.1:${fwd.port}`}
      const c = client({proxy, plainHttp: () => false, caCerts: [tlsReg.caPem!]})
      const r = {registry: name, repository: 'net/tunnel'}
      await c.putBlob(r, sha256Digest(blob), blob.length, () => Readable.from([blob]))
      expect(await c.hasBlob(r, sha256Digest(blob))).toBe(true)
      expect(tunnels.length).toBeGreaterThan(0)
      expect(new Set(tunnels)).toEqual(new Set([name]))
      // without the CA, the tunnelled TLS is not trusted
      const e = await client({proxy, plainHttp: () => false}).ping(name).catch((err: unknown) => err)
      expect(e).toMatchObject({kind: 'tls'})
    } finally {
      await tlsReg.stop()
    }
  })
})
