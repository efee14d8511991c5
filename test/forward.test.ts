/**
 * The host half of the pod forwarders: a Unix socket per port, piped to 127.0.0.1:<port>. Closing
 * them must not wait on a connection a pod left open (a kpack controller's watch of the apiserver):
 * once, that held a test file's teardown until its hook timed out, and left the sandbox running.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {connect, createServer, type Server, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startHostForwarders} from '../src/sandbox/forward.js'

let dir: string
let upstream: Server
let port: number
const held: Socket[] = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-forward-'))
  // an echo server that never closes a connection itself, as the apiserver keeps a watch open
  upstream = createServer((s) => {
    held.push(s)
    s.pipe(s)
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  port = (upstream.address() as {port: number}).port
})

afterAll(async () => {
  for (const s of held) s.destroy()
  await new Promise<void>((r) => upstream.close(() => r()))
  await rm(dir, {recursive: true, force: true})
})

describe('host forwarders', () => {
  it('forward a Unix socket to the loopback port, and close while a connection is still open', async () => {
    const f = await startHostForwarders(dir, [port])
    const client = connect(join(dir, `${port}.sock`))
    const echoed = await new Promise<string>((resolve, reject) => {
      client.once('error', reject)
      client.once('data', (d) => resolve(d.toString()))
      client.write('ping')
    })
    expect(echoed).toBe('ping')

    const clientClosed = new Promise<void>((r) => client.once('close', () => r()))
    const outcome = await Promise.race([
      f.close().then(() => 'closed' as const),
      new Promise<'hung'>((r) => setTimeout(() => r('hung'), 3000)),
    ])
    expect(outcome, 'close() returns although the client never hung up').toBe('closed')
    await clientClosed
  })
})
