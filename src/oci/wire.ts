/**
 * Registry requests over plain sockets: one HTTP/1.1 exchange per request on kept-alive
 * connections. Blob bodies were why: undici parses every byte in its wasm llhttp and copies each
 * body chunk out of wasm memory into a new Buffer; here the socket's own chunks go straight to the
 * consumer, and a PUT body's chunks straight to the socket. A 1 GiB copy from a plain-HTTP
 * registry to a TLS one, without hashing: 1.75-2.42 CPU-s through undici, 1.45-1.69 here with the
 * read buffers pooled (buffer-pool.ts). Every other request reached directly (auth probes, tokens,
 * manifests, HEADs, upload sessions) goes here too, so that undici is not loaded at all unless a
 * proxy is in the way (request.ts chooses): loading it cost each run about 5 MiB of RSS and 15 ms.
 */
import {isIP, connect as netConnect, type Socket} from 'node:net'
import {Readable} from 'node:stream'
import {connect as tlsConnect, type ConnectionOptions, type SecureContext} from 'node:tls'
import {doneWith, handOut, isPooled, takeBuffer} from './buffer-pool.js'

export interface WireOptions {
  tls: (host: string) => {secureContext?: SecureContext; rejectUnauthorized: boolean}
  timeoutMs: number
  userAgent: string
}

/** The methods registry requests use (request.ts's, too). */
export type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE'

export interface WireRequest {
  method: Method
  url: URL
  headers: Record<string, string>
  /** a stream of exactly `size` bytes (a blob), or a whole small body */
  body?: Readable | Buffer | string
  size?: number
}

/** The subset of undici's ResponseData that kpi reads. */
export interface WireResponse {
  statusCode: number
  headers: Record<string, string | string[]>
  body: WireBody
}

/** An error with the code undici gives the same failure, so retries and messages treat both alike. */
const coded = (code: string, message: string): Error => Object.assign(new Error(message), {code})

const HEAD_LIMIT = 64 * 1024
const IDLE_MS = 30_000

/**
 * Sockets read into buffers of the process's pool (buffer-pool.ts) of this size, a read at a
 * time, and move on to a new one when less than MIN_READ is left. Each socket being read holds
 * one, and a response body holds as much before it is read: with 256 KiB (and ranged.ts's
 * HIGH_WATER and READ_BACK at 256 KiB), the copy behind the WAN profile peaked at 96.9-98.7 MiB
 * RSS (100 in a full benchmark run), with 128 KiB at 88.2-89.8; registry to registry on loopback
 * 89.8-91.2 against 85.7-86.5. Times side by side, 3 rounds: 11.62 s against 11.23 (WAN), 7.86
 * against 7.71, archive write 3.37 against 3.28, each within its rounds' spread.
 */
const SLAB_BYTES = 128 * 1024
const MIN_READ = 64 * 1024

const kRead = Symbol('wire read')
const kLetGo = Symbol('wire let go of the read buffer')
const kDeliver = Symbol('wire deliver what is gathered')
type ReadingSocket = Socket & {
  [kRead]?: (chunk: Buffer, slab: Buffer) => boolean | void
  [kLetGo]?: () => void
  [kDeliver]?: () => void
}
/** the most plaintext one TLS record carries: node decrypts one record per read */
const TLS_RECORD = 16 * 1024
/** the socket gives its read buffer back when it closes, whatever listeners an exchange removed */
const keepLetGo = (socket: Socket): void => {
  const letGo = (socket as ReadingSocket)[kLetGo]
  if (letGo) socket.once('close', letGo)
}

/** A response body: a Readable with undici's dump(), text() and json(). */
export class WireBody extends Readable {
  constructor(private readonly wake: () => void) {
    super({highWaterMark: 128 * 1024})
  }

  override _read(): void {
    this.wake()
  }

  async dump(): Promise<void> {
    // small bodies (errors, the empty answers to PUT) are read to the end so the socket is reused
    let n = 0
    for await (const chunk of this) {
      n += (chunk as Buffer).length
      if (n > 128 * 1024) {
        this.destroy()
        return
      }
    }
  }

  async text(): Promise<string> {
    const parts: Buffer[] = []
    for await (const chunk of this) parts.push(chunk as Buffer)
    return Buffer.concat(parts).toString('utf8')
  }

  /** as undici's: request.ts hands this body on typed as undici's, whose callers may parse it */
  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown
  }
}

type Framing = {kind: 'none'} | {kind: 'length'; left: number} | {kind: 'chunked'} | {kind: 'close'}

interface Head {
  statusCode: number
  headers: Record<string, string | string[]>
  framing: Framing
  keepAlive: boolean
}

function parseHead(text: string, method: string): Head {
  const lines = text.split('\r\n')
  const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '')
  if (!m) throw coded('UND_ERR_SOCKET', `not an HTTP/1.1 response: ${JSON.stringify((lines[0] ?? '').slice(0, 40))}`)
  const statusCode = Number(m[2])
  const headers: Record<string, string | string[]> = {}
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    const name = line.slice(0, i).trim().toLowerCase()
    const value = line.slice(i + 1).trim()
    const had = headers[name]
    headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value]
  }
  const one = (name: string): string => {
    const v = headers[name]
    return (Array.isArray(v) ? v.join(',') : v ?? '').toLowerCase()
  }
  const keepAlive = m[1] === '1' ? !one('connection').includes('close') : one('connection').includes('keep-alive')
  let framing: Framing
  if (method === 'HEAD' || statusCode === 204 || statusCode === 304) framing = {kind: 'none'}
  else if (one('transfer-encoding').includes('chunked')) framing = {kind: 'chunked'}
  else if (headers['content-length'] !== undefined) {
    const left = Number(one('content-length').split(',')[0])
    if (!Number.isSafeInteger(left) || left < 0) throw coded('UND_ERR_SOCKET', `invalid content-length ${one('content-length')}`)
    framing = {kind: 'length', left}
  } else framing = {kind: 'close'}
  return {statusCode, headers, framing, keepAlive: keepAlive && framing.kind !== 'close'}
}

/**
 * Chunked transfer coding, decoded as bytes arrive: returns the data parts of `buf` and whether
 * the last chunk (and its trailers) has been read.
 */
function chunkedDecoder(): (buf: Buffer) => {data: Buffer[]; done: boolean} {
  let state: 'size' | 'data' | 'data-end' | 'trailer' = 'size'
  let left = 0
  let line = ''
  return (buf) => {
    const data: Buffer[] = []
    let i = 0
    while (i < buf.length) {
      if (state === 'data') {
        const n = Math.min(left, buf.length - i)
        data.push(buf.subarray(i, i + n))
        i += n
        left -= n
        if (left === 0) state = 'data-end'
        continue
      }
      const nl = buf.indexOf(10, i)
      const end = nl === -1 ? buf.length : nl + 1
      line += buf.toString('latin1', i, end)
      i = end
      if (line.length > 4096) throw coded('UND_ERR_SOCKET', 'chunked body: a size or trailer line too long')
      if (nl === -1) continue
      const text = line.trim()
      line = ''
      if (state === 'data-end') {
        if (text !== '') throw coded('UND_ERR_SOCKET', 'chunked body: no CRLF after a chunk')
        state = 'size'
      } else if (state === 'size') {
        left = parseInt(text.split(';')[0] ?? '', 16)
        if (!Number.isSafeInteger(left) || left < 0) throw coded('UND_ERR_SOCKET', `chunked body: bad chunk size ${JSON.stringify(text.slice(0, 20))}`)
        state = left === 0 ? 'trailer' : 'data'
      } else if (text === '') {
        return {data, done: true}
      }
    }
    return {data, done: false}
  }
}

export interface Wire {
  request(req: WireRequest): Promise<WireResponse>
  /**
   * Opens connections to `url`'s origin until `count` are idle or opening, for requests about to
   * come: the next request takes one instead of waiting for its own handshake.
   */
  preconnect(url: URL, count: number): void
  /**
   * The shortest time any request to `url`'s origin took from its head written to its answer's
   * head read (Infinity before the first answer): a round trip and the server's quickest reply,
   * what tells a short path from a long one (see ranged.ts's NEAR_ANSWER_MS).
   */
  quickestAnswerMs(url: URL): number
  close(): void
}

export function createWire(opts: WireOptions): Wire {
  const idle = new Map<string, Socket[]>()
  /** connections preconnect() is opening; a request takes one out, else it goes idle when open */
  const opening = new Map<string, Array<Promise<Socket | undefined>>>()
  const quickest = new Map<string, number>()
  let closed = false

  const keyOf = (u: URL): string => `${u.protocol}//${u.host}`

  function connect(u: URL): Promise<Socket> {
    const secure = u.protocol === 'https:'
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
    const port = Number(u.port || (secure ? 443 : 80))
    return new Promise((resolve, reject) => {
      // Reads are packed into the socket's current buffer, each one after the last: a short read
      // (a slow link gives a few KiB at a time) takes only its bytes of it, neither a buffer of its
      // own nor a copy. The socket holds its current buffer (`holding`, a view given back when it
      // moves on), so the buffer is not read into by another while this one still fills it.
      let current: Buffer | undefined
      let used = 0
      let holding: Buffer | undefined
      const moveOn = (): void => {
        if (holding) doneWith(holding)
        current = holding = undefined
      }
      const next = (): void => {
        moveOn()
        current = takeBuffer(SLAB_BYTES)
        used = start = 0
        holding = current.subarray(0, 0)
        handOut(holding, current)
      }
      // A TLS socket decrypts one record (16 KiB at most) per read into the buffer it is offered.
      // Handed on one by one, each record went alone through the body, the pipe and the upload's
      // TLS write and syscall: records are gathered and go on a slab's worth, or a read burst's, at
      // a time (a short record ends what the server sent: a response head, a body's end). A
      // plain socket's read goes on as it comes.
      const minRead = secure ? TLS_RECORD : MIN_READ
      let start = 0
      let later = false
      const deliver = (): boolean => {
        if (!current || used === start) return true
        const from = start
        start = used
        return (socket as ReadingSocket)[kRead]?.(current.subarray(from, used), current) !== false
      }
      const deliverLater = (): void => {
        later = false
        deliver()
      }
      // Without onread buffers, node would allocate a Buffer per TLS record: 2 GiB read from an
      // HTTPS registry made 130 thousand of them, and V8 answers that much external memory with
      // full collections (175 in one copy, 1.9 s of its 9 CPU-s)
      const onread = {
        buffer: (): Buffer => {
          if (!current || SLAB_BYTES - used < minRead) {
            deliver()
            next()
          }
          return current!.subarray(used)
        },
        callback: (n: number): boolean => {
          used += n
          if (!secure || n < TLS_RECORD || SLAB_BYTES - used < minRead) return deliver()
          if (!later) {
            later = true
            setImmediate(deliverLater)
          }
          return true
        },
      }
      const socket: Socket = secure
        // tls.connect takes onread as net.connect does (documented; not in @types/node's options)
        ? tlsConnect({host, port, ...(isIP(host) ? {} : {servername: host}), ALPNProtocols: ['http/1.1'], ...opts.tls(u.host), onread} as ConnectionOptions)
        : netConnect({host, port, onread})
      ;(socket as ReadingSocket)[kDeliver] = deliver
      ;(socket as ReadingSocket)[kLetGo] = moveOn
      keepLetGo(socket)
      const timer = setTimeout(() => socket.destroy(coded('UND_ERR_CONNECT_TIMEOUT', `connect to ${u.host} timed out`)), Math.min(15_000, opts.timeoutMs))
      const done = (e?: Error): void => {
        clearTimeout(timer)
        socket.off('error', done)
        if (e) reject(e)
        else {
          socket.setNoDelay(true)
          resolve(socket)
        }
      }
      socket.once('error', done)
      socket.once(secure ? 'secureConnect' : 'connect', () => done())
    })
  }

  function takeIdle(key: string): Socket | undefined {
    const list = idle.get(key)
    while (list?.length) {
      const s = list.pop()!
      if (!s.destroyed && s.readable && s.writable) return s
      s.destroy()
    }
    return undefined
  }

  function release(key: string, socket: Socket): void {
    if (closed || socket.destroyed) {
      socket.destroy()
      return
    }
    socket.removeAllListeners('end').removeAllListeners('close').removeAllListeners('error').removeAllListeners('drain').removeAllListeners('timeout')
    keepLetGo(socket)
    // a server that closes an idle connection: drop it from the pool
    const drop = (): void => {
      socket.destroy()
      const list = idle.get(key)
      const i = list?.indexOf(socket) ?? -1
      if (i >= 0) list!.splice(i, 1)
    }
    socket.on('error', drop).on('close', drop).on('end', drop)
    ;(socket as ReadingSocket)[kRead] = drop
    socket.setTimeout(IDLE_MS, drop)
    // a body read with backpressure may have left it paused: an idle socket reads, to see a close
    socket.resume()
    socket.unref()
    const list = idle.get(key) ?? []
    list.push(socket)
    idle.set(key, list)
  }

  function preconnect(url: URL, count: number): void {
    const key = keyOf(url)
    const list = opening.get(key) ?? []
    for (let n = (idle.get(key)?.length ?? 0) + list.length; n < count && !closed; n++) {
      // a connection that fails to open is the next request's to report, on a connection of its own
      const socket = connect(url).catch(() => undefined)
      list.push(socket)
      void socket.then((s) => {
        const i = list.indexOf(socket)
        if (i < 0) return
        list.splice(i, 1)
        if (s) release(key, s)
      })
    }
    if (list.length) opening.set(key, list)
  }

  /** an idle connection, else one preconnect() is opening (undefined if that fails) */
  async function takeReady(key: string): Promise<Socket | undefined> {
    const s = takeIdle(key)
    if (s) return s
    const socket = opening.get(key)?.shift()
    return socket && (await socket)
  }

  async function request(req: WireRequest): Promise<WireResponse> {
    // a value from elsewhere (a token server's token) must not add lines of its own; undici refuses the same
    for (const [k, v] of Object.entries(req.headers)) {
      if (/[\r\n\0]/.test(k + v)) throw coded('UND_ERR_INVALID_ARG', `invalid request header ${JSON.stringify(k)}: it holds a line break`)
    }
    const key = keyOf(req.url)
    const reused = await takeReady(key)
    try {
      return await exchange(req, key, reused ?? (await connect(req.url)), reused !== undefined)
    } catch (e) {
      // a kept-alive connection the server had closed: once more on a new one, if nothing was sent
      if (reused && (e as {staleConnection?: boolean}).staleConnection) return exchange(req, key, await connect(req.url), false)
      throw e
    }
  }

  function exchange(req: WireRequest, key: string, socket: Socket, reused: boolean): Promise<WireResponse> {
    socket.removeAllListeners('end').removeAllListeners('close').removeAllListeners('error').removeAllListeners('timeout')
    keepLetGo(socket)
    socket.ref()
    // a socket paused stops reading (readStop, with onread): nothing would see the response
    socket.resume()
    const u = req.url
    const src = req.body instanceof Readable ? req.body : undefined
    const whole = src || req.body === undefined ? undefined : Buffer.from(req.body as Buffer | string)
    const lines = [`${req.method} ${u.pathname}${u.search} HTTP/1.1`, `host: ${u.host}`]
    if (req.headers['user-agent'] === undefined) lines.push(`user-agent: ${opts.userAgent}`)
    for (const [k, v] of Object.entries(req.headers)) {
      if (k !== 'content-length') lines.push(`${k}: ${v}`)
    }
    // as undici: a length for every body, and 0 for a method that carries one but has none
    let length: number | undefined
    if (src) length = req.size ?? Number(req.headers['content-length'] ?? 0)
    else if (whole) length = whole.length
    else if (req.method === 'PUT' || req.method === 'POST' || req.method === 'PATCH') length = 0
    if (length !== undefined) lines.push(`content-length: ${length}`)
    lines.push('', '')

    return new Promise<WireResponse>((resolve, reject) => {
      let head: Head | undefined
      let headBuf: Buffer | undefined
      let body: WireBody | undefined
      let decode: ReturnType<typeof chunkedDecoder> | undefined
      let requestDone = !src
      let responseDone = false
      let received = false
      let sentBody = 0
      let sentAt = 0
      let finished = false
      let stopSending = (): void => {}
      // a kept-alive connection the server had closed is asked again on a new one only when
      // nothing of this exchange was used up: no answer, and nothing of a streamed body taken from
      // its source; an empty stream that ended is used up too, a retry would find it ended
      const stale = (): boolean => reused && !received && (!src || (sentBody === 0 && !requestDone))

      const finish = (e?: Error): void => {
        if (finished) return
        finished = true
        stopSending()
        socket.setTimeout(0)
        if (e) {
          socket.destroy()
          if (!head) reject(e)
          else body?.destroy(e)
          return
        }
        // reused only after a whole exchange: both bodies complete, and the server keeps it open
        if (head?.keepAlive && requestDone && responseDone) release(key, socket)
        else socket.destroy()
      }

      const onBody = (chunk: Buffer, slab: Buffer): void => {
        if (!head || !body) return
        const f = head.framing
        let parts: Buffer[] = []
        let done = false
        if (f.kind === 'length') {
          const n = Math.min(f.left, chunk.length)
          parts = [n === chunk.length ? chunk : chunk.subarray(0, n)]
          f.left -= n
          done = f.left === 0
        } else if (f.kind === 'chunked') {
          ;({data: parts, done} = decode!(chunk))
        } else parts = [chunk]
        let more = true
        for (const p of parts) {
          if (!p.length) continue
          if (p.buffer === slab.buffer) handOut(p, slab)
          more = body.push(p) && more
        }
        if (done) {
          responseDone = true
          body.push(null)
          finish()
        } else if (!more) socket.pause()
      }

      const onHead = (h: Head, rest: Buffer, slab: Buffer): void => {
        head = h
        const took = performance.now() - sentAt
        if (took < (quickest.get(key) ?? Infinity)) quickest.set(key, took)
        body = new WireBody(() => {
          if (!finished && !socket.destroyed) socket.resume()
        })
        body.once('close', () => {
          // a consumer that stops reading early: the connection is not reusable
          if (!responseDone) finish()
        })
        // a connection lost before anyone reads (or listens to) the body must not be an uncaught
        // exception that ends the process: readers still get the error, as the stream's `errored`
        body.on('error', () => {})
        if (h.framing.kind === 'chunked') decode = chunkedDecoder()
        if (!requestDone) {
          // answered before the whole body was sent (a refusal): stop sending, do not reuse
          head.keepAlive = false
          stopSending()
        }
        resolve({statusCode: h.statusCode, headers: h.headers, body})
        if (h.framing.kind === 'none' || (h.framing.kind === 'length' && h.framing.left === 0)) {
          responseDone = true
          body.push(null)
          finish()
          return
        }
        if (rest.length) onBody(rest, slab)
      }

      ;(socket as ReadingSocket)[kRead] = (chunk: Buffer, slab: Buffer): boolean => {
        received = true
        if (head) {
          try {
            onBody(chunk, slab)
          } catch (e) {
            finish(e as Error)
          }
          return true
        }
        headBuf = headBuf ? Buffer.concat([headBuf, chunk]) : chunk
        for (;;) {
          const end = headBuf.indexOf('\r\n\r\n')
          if (end === -1) {
            if (headBuf.length > HEAD_LIMIT) finish(coded('UND_ERR_HEADERS_OVERFLOW', 'response headers too large'))
            // kept past this read: a copy, since a read buffer is read into again once given back
            else if (headBuf.buffer === slab.buffer) headBuf = Buffer.from(headBuf)
            return true
          }
          let h: Head
          try {
            h = parseHead(headBuf.toString('latin1', 0, end), req.method)
          } catch (e) {
            finish(e as Error)
            return true
          }
          const rest = headBuf.subarray(end + 4)
          headBuf = rest
          // 100 Continue and other interim answers precede the real one
          if (h.statusCode < 200) continue
          try {
            onHead(h, rest, slab)
          } catch (e) {
            finish(e as Error)
          }
          return true
        }
      }
      socket.on('end', () => {
        ;(socket as ReadingSocket)[kDeliver]?.()
        if (head?.framing.kind === 'close' && !responseDone) {
          responseDone = true
          body?.push(null)
          finish()
          return
        }
        const e = coded('UND_ERR_SOCKET', `${u.host} closed the connection`)
        if (stale()) Object.assign(e, {staleConnection: true})
        finish(e)
      })
      socket.on('error', (e: Error) => {
        if (stale()) Object.assign(e, {staleConnection: true})
        finish(e)
      })
      socket.on('close', () => {
        if (!finished) finish(coded('UND_ERR_SOCKET', `${u.host} closed the connection`))
      })
      const onTimeout = (): void => {
        // a body its consumer is not reading yet is not a silent server (undici's bodyTimeout alike)
        if (socket.isPaused() && head && !responseDone) {
          socket.setTimeout(opts.timeoutMs, onTimeout)
          return
        }
        finish(coded(head ? 'UND_ERR_BODY_TIMEOUT' : 'UND_ERR_HEADERS_TIMEOUT', `${u.host} sent nothing for ${opts.timeoutMs} ms`))
      }
      socket.setTimeout(opts.timeoutMs, onTimeout)

      const headText = lines.join('\r\n')
      sentAt = performance.now()
      socket.write(whole ? Buffer.concat([Buffer.from(headText), whole]) : headText)
      if (src) {
        const size = length ?? 0
        const mismatch = (): Error => coded('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', `request body is not the ${size} bytes announced`)
        const onData = (chunk: Buffer): void => {
          sentBody += chunk.length
          if (sentBody > size) {
            finish(mismatch())
            return
          }
          // written, a view of a read slab goes back to its pool (see doneWith); no callback for
          // other chunks: a source that pushes synchronously would pile them up until the tick ends
          const sent = isPooled(chunk) ? socket.write(chunk, () => doneWith(chunk)) : socket.write(chunk)
          if (!sent) {
            src.pause()
            socket.once('drain', () => src.resume())
          }
        }
        const onEnd = (): void => {
          if (sentBody !== size) {
            finish(mismatch())
            return
          }
          requestDone = true
          if (responseDone) finish()
        }
        const onError = (e: Error): void => finish(e)
        // a source that failed (or was closed) before or while being sent, without an 'end'
        const onClose = (): void => {
          if (!requestDone) finish(src.errored ?? mismatch())
        }
        src.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose)
        // paused when this exchange stops sending: a retry on a new connection reads on from here
        src.resume()
        stopSending = () => {
          src.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose)
          if (!requestDone) src.pause()
        }
        if (src.destroyed) finish(src.errored ?? mismatch())
      }
    })
  }

  return {
    request,
    preconnect,
    quickestAnswerMs: (url: URL): number => quickest.get(keyOf(url)) ?? Infinity,
    close(): void {
      closed = true
      for (const list of idle.values()) for (const s of list) s.destroy()
      idle.clear()
    },
  }
}
