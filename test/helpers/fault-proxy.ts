/**
 * A small HTTP proxy for the reliability tests that stands between kpi and a registry and answers
 * chosen requests with an error (500, 503, 429 with Retry-After, a 400 with a chosen registry
 * error code) instead of forwarding them, or forwards them late.
 * Everything else is forwarded unchanged (the Host header too, so the upload locations the
 * registry hands out point back through the proxy).
 */
import {createServer, request, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

export interface FaultRule {
  /** which requests: tested against `METHOD /path?query` */
  match: RegExp
  status: number
  /** how many matching requests get the fault (default: every one) */
  times?: number
  /** Retry-After header value, in seconds */
  retryAfter?: number
  /** the registry error code in the body (default: TOOMANYREQUESTS for 429, else UNAVAILABLE) */
  code?: string
  /** forward the request after this many ms instead of answering it (`status` is not used) */
  delayMs?: number
}

/** a request the proxy saw: when, `METHOD /path?query`, the fault answered, how its answer ended */
export interface LoggedRequest {
  at: number
  key: string
  fault?: number
  /** 'aborted': the client closed the connection before all of the answer was sent */
  ended?: 'finished' | 'aborted'
}

export interface FaultProxy {
  /** `127.0.0.1:PORT` */
  host: string
  /** replace the rules (and reset their counts and the request log) */
  set(rules: FaultRule[]): void
  /** stop injecting, keeping the counts and the log */
  off(): void
  /** faults answered since the last set() */
  served(): number
  /** when each fault was answered (ms since the epoch), per rule */
  times(): number[][]
  /** every request since the last set() */
  log(): LoggedRequest[]
  stop(): Promise<void>
}

/** `rewrite`: the path and query forwarded instead of the one asked (a registry that ignores a parameter) */
export async function startFaultProxy(target: string, opts: {rewrite?: (pathAndQuery: string) => string} = {}): Promise<FaultProxy> {
  let rules: Array<FaultRule & {left: number; at: number[]}> = []
  let requests: LoggedRequest[] = []
  const [targetHost, targetPort] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))]

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const up = request({host: targetHost, port: targetPort, method: req.method, path: opts.rewrite ? opts.rewrite(req.url!) : req.url, headers: req.headers}, (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers)
      ures.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.on('error', () => up.destroy())
    req.pipe(up)
  }

  const server: Server = createServer((req, res) => {
    const key = `${req.method} ${req.url}`
    const rule = rules.find((r) => r.left > 0 && r.match.test(key))
    const entry: LoggedRequest = {at: Date.now(), key, ...(rule ? {fault: rule.status} : {})}
    requests.push(entry)
    res.once('finish', () => (entry.ended ??= 'finished'))
    res.once('close', () => (entry.ended ??= 'aborted'))
    if (!rule) return forward(req, res)
    rule.left--
    rule.at.push(Date.now())
    if (rule.delayMs !== undefined) {
      setTimeout(() => forward(req, res), rule.delayMs)
      return
    }
    // read the request body first, as a registry would, so the client is not cut off mid-send
    req.resume()
    req.on('end', () => {
      const body = JSON.stringify({errors: [{code: rule.code ?? (rule.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE'), message: `fault injected: ${rule.status}`}]})
      res.writeHead(rule.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...(rule.retryAfter !== undefined ? {'retry-after': String(rule.retryAfter)} : {}),
      })
      res.end(body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    host: `127.0.0.1:${port}`,
    set: (r) => {
      rules = r.map((x) => ({...x, left: x.times ?? Number.POSITIVE_INFINITY, at: []}))
      requests = []
    },
    off: () => {
      for (const r of rules) r.left = 0
    },
    served: () => rules.reduce((n, r) => n + r.at.length, 0),
    times: () => rules.map((r) => [...r.at]),
    log: () => [...requests],
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
