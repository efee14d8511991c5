/**
 * A loopback HTTP proxy in front of a registry that holds chosen requests a while before it
 * forwards them (a slow path to one repository), and says when each request starts and ends (to
 * count those in flight). Everything is forwarded unchanged, the Host header too.
 */
import {createServer, request, type IncomingMessage} from 'node:http'
import type {AddressInfo} from 'node:net'

export interface DelayProxy {
  /** `127.0.0.1:PORT` */
  host: string
  stop(): Promise<void>
}

export async function startDelayProxy(target: string, o: {delayMs: (req: IncomingMessage) => number; onStart?: (req: IncomingMessage) => void; onEnd?: (req: IncomingMessage) => void}): Promise<DelayProxy> {
  const [host, port] = target.split(':')
  const server = createServer((req, res) => {
    o.onStart?.(req)
    setTimeout(() => {
      const up = request({host, port: Number(port), method: req.method, path: req.url, headers: req.headers}, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
        r.on('end', () => o.onEnd?.(req))
      })
      up.on('error', () => res.destroy())
      req.pipe(up)
    }, o.delayMs(req))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => new Promise((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}
