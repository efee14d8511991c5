import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {createServer, type Server, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {createSecureContext, createServer as createTlsServer} from 'node:tls'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {createWire, type Wire} from '../src/oci/wire.js'
import {poolCounts} from '../src/oci/buffer-pool.js'
import {issueCert, makeCA} from '../src/sandbox/pki.js'

/** A server on loopback answering each request as `answer` says, on raw sockets (so framing is ours). */
interface Scripted {
  url: (path: string) => URL
  connections: number
  requests: Array<{head: string; body: Buffer}>
  close(): Promise<void>
}

/** a TLS server's certificate and key, PEM */
type TlsFiles = {cert: string; key: string}

type Answer = (req: {head: string; body: Buffer}, socket: Socket) => void | Promise<void>

async function scripted(answer: Answer, opts: {readBody?: boolean; tls?: TlsFiles} = {}): Promise<Scripted> {
  const s: Scripted = {url: () => new URL('http://x'), connections: 0, requests: [], close: async () => {}}
  const sockets = new Set<Socket>()
  const onConnection = (socket: Socket): void => {
    s.connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    let want: {head: string; left: number; body: Buffer[]} | undefined
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        if (!want) {
          const end = buf.indexOf('\r\n\r\n')
          if (end === -1) return
          const head = buf.toString('latin1', 0, end)
          buf = buf.subarray(end + 4)
          const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0)
          want = {head, left: opts.readBody === false ? 0 : len, body: []}
          if (opts.readBody === false) {
            const req = {head, body: Buffer.alloc(0)}
            s.requests.push(req)
            void answer(req, socket)
            return
          }
        }
        const n = Math.min(want.left, buf.length)
        want.body.push(buf.subarray(0, n))
        buf = buf.subarray(n)
        want.left -= n
        if (want.left > 0) return
        const req = {head: want.head, body: Buffer.concat(want.body)}
        want = undefined
        s.requests.push(req)
        void answer(req, socket)
      }
    })
  }
  const server: Server = opts.tls ? createTlsServer(opts.tls, onConnection) : createServer(onConnection)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as {port: number}).port
  s.url = (path) => new URL(`${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}${path}`)
  s.close = async () => {
    for (const so of sockets) so.destroy()
    await new Promise((r) => server.close(r))
  }
  return s
}

const ok = (body: Buffer | string, extra = ''): string | Buffer =>
  Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`), Buffer.from(body)])

/** A server that answers `answer`, except to the second request on a connection: it has just closed it. */
function closesOnSecondRequest(answer: string | Buffer): Promise<Scripted> {
  const served = new WeakMap<Socket, number>()
  return scripted((_req, so) => {
    const n = (served.get(so) ?? 0) + 1
    served.set(so, n)
    if (n === 2) so.destroy()
    else so.write(answer)
  })
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of r) parts.push(c as Buffer)
  return Buffer.concat(parts)
}

/**
 * A 32 MiB download piped into an upload, twice, through the wire `open` makes (`keep` is given
 * the sink, to close after the test): every byte arrives, and read buffers are reused more often
 * than new ones are allocated.
 */
async function copyTwice(open: () => Wire, keep: (sink: Scripted) => void, tls?: TlsFiles): Promise<void> {
  const blob = randomBytes(32 * 1024 * 1024)
  const source = await scripted((_req, so) => void so.write(ok(blob)), {tls})
  const sink = await scripted((_req, so) => void so.write('HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'), {tls})
  keep(sink)
  const wire = open()
  const before = poolCounts()
  try {
    for (let i = 0; i < 2; i++) {
      const down = await wire.request({method: 'GET', url: source.url('/blob'), headers: {}})
      const up = await wire.request({method: 'PUT', url: sink.url('/up'), headers: {}, body: down.body, size: blob.length})
      expect(up.statusCode).toBe(201)
      await up.body.dump()
    }
  } finally {
    await source.close()
  }
  // a read buffer reused while its bytes were still on their way would show here
  for (const r of sink.requests) expect(r.body.equals(blob)).toBe(true)
  const after = poolCounts()
  expect(after.reused - before.reused).toBeGreaterThan(after.allocated - before.allocated)
}

describe('wire: requests on plain sockets', () => {
  let wire: Wire
  let server: Scripted | undefined
  const open = (timeoutMs = 5_000): Wire => (wire = createWire({tls: () => ({rejectUnauthorized: true}), timeoutMs, userAgent: 'kpi-test'}))
  afterEach(async () => {
    wire?.close()
    await server?.close()
    server = undefined
  })

  it('reads Content-Length bodies and reuses the connection for the next request', async () => {
    const blob = randomBytes(3 * 1024 * 1024 + 17)
    server = await scripted((_req, so) => void so.write(ok(blob)))
    open()
    for (let i = 0; i < 3; i++) {
      const res = await wire.request({method: 'GET', url: server.url('/v2/a/blobs/x'), headers: {authorization: 'Bearer t'}})
      expect(res.statusCode).toBe(200)
      expect((await collect(res.body)).equals(blob)).toBe(true)
    }
    expect(server.connections).toBe(1)
    expect(server.requests[0]!.head).toMatch(/^GET \/v2\/a\/blobs\/x HTTP\/1.1\r\nhost: 127.0.0.1:\d+\r\nuser-agent: kpi-test\r\nauthorization: Bearer t$/)
  })

  it('keeps each origin\'s quickest answer, head written to head read: the wait for the head counts, the body\'s time does not', async () => {
    // a slow answer first, then quick heads whose bodies take 60 ms to finish: the quickest is a quick head
    let n = 0
    server = await scripted(async (_req, so) => {
      if (n++ === 0) {
        await sleep(60)
        so.write(ok('slow'))
        return
      }
      const whole = ok(randomBytes(1 << 20)) as Buffer
      so.write(whole.subarray(0, 1000))
      await sleep(60)
      so.write(whole.subarray(1000))
    })
    const other = await scripted(async (_req, so) => {
      await sleep(40)
      so.write(ok('far'))
    })
    open()
    try {
      expect(wire.quickestAnswerMs(server.url('/'))).toBe(Infinity)
      await (await wire.request({method: 'GET', url: server.url('/a'), headers: {}})).body.dump()
      const first = wire.quickestAnswerMs(server.url('/'))
      expect(first).toBeGreaterThanOrEqual(55)
      for (let i = 0; i < 3; i++) await collect((await wire.request({method: 'GET', url: server.url('/b'), headers: {}})).body)
      expect(wire.quickestAnswerMs(server.url('/other/path'))).toBeLessThan(first)
      expect(wire.quickestAnswerMs(server.url('/'))).toBeLessThan(40)
      // another origin (another port) has its own
      expect(wire.quickestAnswerMs(other.url('/'))).toBe(Infinity)
      await (await wire.request({method: 'GET', url: other.url('/'), headers: {}})).body.dump()
      expect(wire.quickestAnswerMs(other.url('/'))).toBeGreaterThanOrEqual(35)
    } finally {
      await other.close()
    }
  })

  it('refuses a header value with a line break, sending nothing (a token cannot add headers of its own)', async () => {
    server = await scripted((_req, so) => void so.write(ok('x')))
    open()
    const sent = wire.request({method: 'GET', url: server.url('/v2/a/blobs/x'), headers: {authorization: 'Bearer t\r\nx-injected: 1'}})
    await expect(sent).rejects.toMatchObject({code: 'UND_ERR_INVALID_ARG', message: 'invalid request header "authorization": it holds a line break'})
    expect(server.requests).toHaveLength(0)
  })

  it('decodes a chunked body however the chunks are cut into packets', async () => {
    const text = 'x'.repeat(5000) + 'END'
    const wireForm = `HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n${(4000).toString(16)};ext=1\r\n${text.slice(0, 4000)}\r\n${(text.length - 4000).toString(16)}\r\n${text.slice(4000)}\r\n0\r\ntrailer: 1\r\n\r\n`
    server = await scripted(async (_req, so) => {
      // one byte at a time through the size lines and CRLFs
      for (let i = 0; i < wireForm.length; i += i < 80 || i > wireForm.length - 40 ? 1 : 997) {
        so.write(wireForm.slice(i, i < 80 || i > wireForm.length - 40 ? i + 1 : i + 997))
        if (i < 80) await sleep(0)
      }
    })
    open()
    const res = await wire.request({method: 'GET', url: server.url('/'), headers: {}})
    expect(res.statusCode).toBe(404)
    expect(await res.body.text()).toBe(text)
    // the exchange ended at the last chunk: the connection is reused
    await (await wire.request({method: 'GET', url: server.url('/'), headers: {}})).body.dump()
    expect(server.connections).toBe(1)
  })

  it('streams a PUT body of the announced size and gives the answer', async () => {
    const blob = randomBytes(5 * 1024 * 1024)
    server = await scripted((_req, so) => void so.write('HTTP/1.1 201 Created\r\ncontent-length: 0\r\nlocation: /v2/a/blobs/x\r\n\r\n'))
    open()
    const res = await wire.request({method: 'PUT', url: server.url('/up?digest=d'), headers: {'content-length': String(blob.length)}, body: Readable.from(chunks(blob, 65536)), size: blob.length})
    expect(res.statusCode).toBe(201)
    expect(res.headers.location).toBe('/v2/a/blobs/x')
    await res.body.dump()
    const got = server.requests[0]!
    expect(got.head).toMatch(/^PUT \/up\?digest=d HTTP\/1.1/)
    expect(createHash('sha256').update(got.body).digest('hex')).toBe(createHash('sha256').update(blob).digest('hex'))
  })

  it('sends the small requests too: a whole body with its length, 0 for a bodyless POST, none for HEAD and DELETE; a HEAD answer has no body', async () => {
    server = await scripted((req, so) => {
      // a HEAD answer names the length of a body it does not send
      if (req.head.startsWith('HEAD ')) so.write('HTTP/1.1 200 OK\r\ncontent-length: 1234\r\ndocker-content-digest: sha256:x\r\n\r\n')
      else if (req.head.startsWith('GET ')) so.write(ok('{"token":"t"}'))
      else so.write('HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nlocation: /up/1\r\n\r\n')
    })
    open()
    const manifest = JSON.stringify({schemaVersion: 2, note: 'é'})
    const sent = [
      {method: 'PUT' as const, url: server.url('/v2/a/manifests/t'), headers: {'content-type': 'application/vnd.oci.image.manifest.v1+json'}, body: manifest},
      {method: 'POST' as const, url: server.url('/v2/a/blobs/uploads/'), headers: {}},
      {method: 'POST' as const, url: server.url('/token'), headers: {'user-agent': 'kpi-auth', 'content-type': 'application/x-www-form-urlencoded'}, body: Buffer.from('grant_type=refresh_token')},
      {method: 'HEAD' as const, url: server.url('/v2/a/manifests/t'), headers: {}},
      {method: 'DELETE' as const, url: server.url('/up/1'), headers: {}},
    ]
    const answers = []
    for (const req of sent) {
      const res = await wire.request(req)
      answers.push({status: res.statusCode, body: await res.body.text()})
    }
    expect(answers).toEqual([{status: 202, body: ''}, {status: 202, body: ''}, {status: 202, body: ''}, {status: 200, body: ''}, {status: 202, body: ''}])
    expect(await (await wire.request({method: 'GET', url: server.url('/token?scope=x'), headers: {}})).body.json()).toEqual({token: 't'})
    // every answer ended where its framing said: one connection for all six
    expect(server.connections).toBe(1)
    const [put, post, token, head, del] = server.requests
    expect(put!.head).toContain(`\r\ncontent-length: ${Buffer.byteLength(manifest)}`)
    expect(put!.body.toString('utf8')).toBe(manifest)
    expect(post!.head).toMatch(/\r\ncontent-length: 0$/)
    expect(token!.body.toString()).toBe('grant_type=refresh_token')
    expect(token!.head.match(/user-agent: .*/g)).toEqual(['user-agent: kpi-auth'])
    for (const r of [head, del]) expect(r!.head).not.toMatch(/content-length/i)
  })

  it('sends a whole body again on a new connection when the kept-alive one closes as it goes out', async () => {
    server = await closesOnSecondRequest('HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n')
    open()
    for (let i = 0; i < 2; i++) {
      const res = await wire.request({method: 'PUT', url: server.url('/v2/a/manifests/t'), headers: {}, body: '{"n":1}'})
      expect(res.statusCode).toBe(201)
      await res.body.dump()
    }
    expect(server.connections).toBe(2)
    expect(server.requests.map((r) => r.body.toString())).toEqual(['{"n":1}', '{"n":1}', '{"n":1}'])
  })

  it('copies a download into an upload byte for byte while reusing the buffers it reads into', () => copyTwice(open, (sink) => (server = sink)))

  it('packs the short reads of a slow link into shared buffers, and an upload of them gets every byte', async () => {
    const blob = randomBytes(2 * 1024 * 1024)
    const piece = 5000
    // a slow link: the body a few KiB at a time, each read short; a buffer of its own per read
    // (a copy, or a pooled buffer taken whole) would make as many buffers as reads
    const source = await scripted(async (_req, so) => {
      so.write(`HTTP/1.1 200 OK\r\ncontent-length: ${blob.length}\r\n\r\n`)
      for (let at = 0; at < blob.length; at += piece) {
        so.write(blob.subarray(at, at + piece))
        await sleep(0)
      }
    })
    server = await scripted((_req, so) => void so.write('HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'))
    open()
    try {
      const down = await wire.request({method: 'GET', url: source.url('/blob'), headers: {}})
      const chunks: Buffer[] = []
      const through = new Readable({read() {}})
      down.body.on('data', (c: Buffer) => {
        chunks.push(c)
        through.push(c)
      }).on('end', () => through.push(null))
      const up = await wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: through, size: blob.length})
      expect(up.statusCode).toBe(201)
      await up.body.dump()
      expect(server.requests[0]!.body.equals(blob)).toBe(true)
      const buffers = new Set(chunks.map((c) => c.buffer))
      expect(chunks.length).toBeGreaterThan(100)
      expect(buffers.size).toBeLessThan(chunks.length / 10)
    } finally {
      await source.close()
    }
  })

  it('fails a PUT whose source gives other than the announced bytes, or fails, and keeps the source error', async () => {
    server = await scripted((_req, so) => void so.write('HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'), {readBody: false})
    open()
    const short = wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: Readable.from([Buffer.alloc(10)]), size: 20})
    await expect(short).rejects.toMatchObject({code: 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'})
    const long = wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: Readable.from([Buffer.alloc(30)]), size: 20})
    await expect(long).rejects.toMatchObject({code: 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'})
    const broken = new Readable({read() {
      this.destroy(new Error('source broke'))
    }})
    await expect(wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: broken, size: 20})).rejects.toThrow('source broke')
    // a source already failed before the request starts
    const failed = new Readable({read() {}})
    failed.on('error', () => {})
    failed.destroy(new Error('failed earlier'))
    await expect(wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: failed, size: 20})).rejects.toThrow('failed earlier')
  })

  it('gives a refusal sent before the body was read, and does not reuse that connection', async () => {
    const refusal = '{"errors":[{"code":"DENIED"}]}'
    server = await scripted((_req, so) => void so.write(`HTTP/1.1 403 Forbidden\r\ncontent-length: ${refusal.length}\r\n\r\n${refusal}`), {readBody: false})
    open()
    const endless = new Readable({read() {
      this.push(Buffer.alloc(65536))
    }})
    const res = await wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: endless, size: 1 << 30})
    expect(res.statusCode).toBe(403)
    endless.destroy()
    expect(await res.body.text()).toBe(refusal)
    await (await wire.request({method: 'GET', url: server.url('/'), headers: {}})).body.dump()
    expect(server.connections).toBe(2)
  })

  it('errors a body nobody reads yet when a reset cuts it short, without an uncaught exception; its reader gets the error', async () => {
    server = await scripted((_req, so) => {
      so.write('HTTP/1.1 403 Forbidden\r\ncontent-length: 1000\r\n\r\n{"errors":[')
      setTimeout(() => so.resetAndDestroy(), 20)
    })
    open()
    const uncaught: unknown[] = []
    const onUncaught = (e: unknown): void => void uncaught.push(e)
    process.on('uncaughtException', onUncaught)
    try {
      const res = await wire.request({method: 'GET', url: server.url('/'), headers: {}})
      expect(res.statusCode).toBe(403)
      // nothing listens to the body while the reset comes
      await sleep(100)
      expect(res.body.errored).toMatchObject({code: 'ECONNRESET'})
      await expect(res.body.text()).rejects.toMatchObject({code: 'ECONNRESET'})
    } finally {
      process.off('uncaughtException', onUncaught)
    }
    expect(uncaught).toEqual([])
  })

  it('drops a kept-alive connection the server closes while idle', async () => {
    server = await scripted((_req, so) => {
      so.end(ok('hello'))
    })
    open()
    expect(await (await wire.request({method: 'GET', url: server.url('/'), headers: {}})).body.text()).toBe('hello')
    await sleep(50)
    expect(await (await wire.request({method: 'GET', url: server.url('/'), headers: {}})).body.text()).toBe('hello')
    expect(server.connections).toBe(2)
  })

  it('asks again on a new connection when a kept-alive one closes as the request goes out', async () => {
    server = await closesOnSecondRequest(ok('hello'))
    open()
    expect(await (await wire.request({method: 'GET', url: server.url('/'), headers: {}})).body.text()).toBe('hello')
    expect(await (await wire.request({method: 'GET', url: server.url('/'), headers: {}})).body.text()).toBe('hello')
    expect(server.connections).toBe(2)
  })

  it('fails an empty PUT whose kept-alive connection closes as it goes out as a reset, not resent with its ended body', async () => {
    server = await closesOnSecondRequest('HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n')
    open()
    const put = () => wire.request({method: 'PUT', url: server!.url('/up'), headers: {}, body: Readable.from([]), size: 0})
    await (await put()).body.dump()
    // the body was read to its end for the closed connection: the caller retries with a fresh one
    const e = await put().catch((err: unknown) => err)
    expect((e as {code?: string}).code).toMatch(/^(ECONNRESET|EPIPE|UND_ERR_SOCKET)$/)
    expect(e).not.toHaveProperty('staleConnection')
    expect(server.connections).toBe(1)
  })

  it('times out a silent server, but not a body its reader has not asked for yet', async () => {
    const blob = randomBytes(4 * 1024 * 1024)
    server = await scripted((req, so) => {
      if (req.head.startsWith('GET /silent')) return
      so.write(ok(blob))
    })
    open(300)
    await expect(wire.request({method: 'GET', url: server.url('/silent'), headers: {}})).rejects.toMatchObject({code: 'UND_ERR_HEADERS_TIMEOUT'})
    const res = await wire.request({method: 'GET', url: server.url('/big'), headers: {}})
    await sleep(800)
    expect((await collect(res.body)).equals(blob)).toBe(true)
  })

  it('times out an upload the server stops reading, but not a body that keeps coming slowly', async () => {
    server = await scripted((req, so) => {
      if (req.head.startsWith('PUT')) {
        so.pause()
        return
      }
      void (async () => {
        so.write('HTTP/1.1 200 OK\r\ncontent-length: 20480\r\n\r\n')
        // 1.2 s in all, more than the timeout, but never 300 ms without a byte
        for (let i = 0; i < 20; i++) {
          await sleep(60)
          so.write(Buffer.alloc(1024, 1))
        }
      })()
    }, {readBody: false})
    open(300)
    const big = 64 * 1024 * 1024
    const put = wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: Readable.from(chunks(Buffer.alloc(big), 1 << 20)), size: big})
    await expect(put).rejects.toMatchObject({code: 'UND_ERR_HEADERS_TIMEOUT'})
    const res = await wire.request({method: 'GET', url: server.url('/slow'), headers: {}})
    expect((await collect(res.body)).length).toBe(20480)
  })

  it('does not time out an upload that takes longer than the timeout while its source keeps giving', async () => {
    const blob = randomBytes(20 * 65536)
    server = await scripted((_req, so) => void so.write('HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'))
    open(300)
    // a slow source (a copy from a distant registry): 0.8 s in all, never 300 ms without a write,
    // and nothing to read until the server answers at the end
    const slow = trickle(blob, 65536, 40)
    const started = Date.now()
    const res = await wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: slow, size: blob.length})
    expect(res.statusCode).toBe(201)
    expect(Date.now() - started).toBeGreaterThan(600)
    expect(server.requests[0]!.body.equals(blob)).toBe(true)
  })

  it('reuses a connection whose last body filled its reader before being read', async () => {
    // the last bytes of a body arrive as its reader's buffer fills: the socket was paused then
    const sizes = [256 * 1024, 256 * 1024 + 700, 300 * 1024, 512 * 1024]
    server = await scripted((req, so) => void so.write(ok(Buffer.alloc(sizes[Number(req.head.split(' ')[1]!.slice(1))]!, 7))))
    open(1_000)
    for (let i = 0; i < sizes.length; i++) {
      const res = await wire.request({method: 'GET', url: server.url(`/${i}`), headers: {}})
      await sleep(50)
      expect((await collect(res.body)).length).toBe(sizes[i])
    }
    expect(server.connections).toBe(1)
  })

  it('drops the connection when the reader stops early, and the next request gets a new one', async () => {
    const blob = randomBytes(8 * 1024 * 1024)
    server = await scripted((_req, so) => void so.write(ok(blob)))
    open()
    const res = await wire.request({method: 'GET', url: server.url('/'), headers: {}})
    for await (const _ of res.body) break
    const again = await wire.request({method: 'GET', url: server.url('/'), headers: {}})
    expect((await collect(again.body)).equals(blob)).toBe(true)
    expect(server.connections).toBe(2)
  })
})

describe('wire: blob bodies over TLS', () => {
  let wire: Wire
  let server: Scripted | undefined
  let dir: string
  let tls: TlsFiles
  let ca: string
  const open = (timeoutMs = 5_000): Wire => (wire = createWire({tls: () => ({secureContext: createSecureContext({ca}), rejectUnauthorized: true}), timeoutMs, userAgent: 'kpi-test'}))
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-wire-tls-'))
    const authority = await makeCA(dir, 'wire test CA')
    const cert = await issueCert(authority, {name: 'server', commonName: '127.0.0.1', ips: ['127.0.0.1'], usage: 'server'})
    tls = {cert: await readFile(cert.cert, 'utf8'), key: await readFile(cert.key, 'utf8')}
    ca = authority.certPem
  })
  afterAll(() => rm(dir, {recursive: true, force: true}))
  afterEach(async () => {
    wire?.close()
    await server?.close()
    server = undefined
  })

  it('hands a body on in chunks of many records, byte for byte, and reuses the connection', async () => {
    const blob = randomBytes(3 * 1024 * 1024 + 17)
    server = await scripted((_req, so) => void so.write(ok(blob)), {tls})
    open()
    for (let i = 0; i < 2; i++) {
      const res = await wire.request({method: 'GET', url: server.url('/v2/a/blobs/x'), headers: {}})
      expect(res.statusCode).toBe(200)
      const parts: Buffer[] = []
      for await (const c of res.body) parts.push(c as Buffer)
      expect(Buffer.concat(parts).equals(blob)).toBe(true)
      // node decrypts a record (16 KiB at most) at a time: each passed on alone would make 192
      expect(parts.length).toBeLessThan(blob.length / 16384 / 2)
    }
    expect(server.connections).toBe(1)
  })

  it('opens connections ahead of requests when asked, and the requests that come use them', async () => {
    server = await scripted((_req, so) => void so.write(ok('done')), {tls})
    open()
    const url = server.url('/v2/a/blobs/x')
    wire.preconnect(url, 2)
    // asked again while they open: still two
    wire.preconnect(url, 2)
    for (const t0 = Date.now(); server.connections < 2 && Date.now() - t0 < 5000;) await sleep(10)
    await sleep(50)
    expect(server.connections).toBe(2)
    const get = async () => (await collect((await wire.request({method: 'GET', url, headers: {}})).body)).toString()
    expect(await Promise.all([get(), get()])).toEqual(['done', 'done'])
    // open and idle now: none more
    wire.preconnect(url, 2)
    expect(await Promise.all([get(), get()])).toEqual(['done', 'done'])
    expect(server.connections).toBe(2)
  })

  it('a connection opened ahead that fails leaves the request to connect and report for itself', async () => {
    const gone = await scripted(() => {}, {tls})
    const url = gone.url('/v2/a/blobs/x')
    await gone.close()
    open()
    wire.preconnect(url, 1)
    await expect(wire.request({method: 'GET', url, headers: {}})).rejects.toMatchObject({code: 'ECONNREFUSED'})
  })

  it('ends a body framed by the close of its connection with every byte, its last record full', async () => {
    const blob = randomBytes(4 * 16384)
    server = await scripted((_req, so) => {
      so.write('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n')
      so.end(blob)
    }, {tls})
    open()
    const res = await wire.request({method: 'GET', url: server.url('/'), headers: {}})
    expect((await collect(res.body)).equals(blob)).toBe(true)
  })

  it('does not time out an upload that takes longer than the timeout while its source keeps giving', async () => {
    const blob = randomBytes(20 * 65536)
    server = await scripted((_req, so) => void so.write('HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'), {tls})
    open(300)
    const res = await wire.request({method: 'PUT', url: server.url('/up'), headers: {}, body: trickle(blob, 65536, 40), size: blob.length})
    expect(res.statusCode).toBe(201)
    expect(server.requests[0]!.body.equals(blob)).toBe(true)
  })

  it('copies a download into an upload byte for byte while reusing the buffers it reads into', () => copyTwice(() => open(), (sink) => (server = sink), tls))
})

/** `buf` in pieces of `size`, one every `ms`: a slow source */
const trickle = (buf: Buffer, size: number, ms: number): Readable => Readable.from((async function* () {
  for (const c of chunks(buf, size)) {
    await sleep(ms)
    yield c
  }
})())

function* chunks(buf: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size)
}
