/**
 * The host half of the pod forwarders (src/cli/sandbox-nsproc.ts is the namespace half): a Unix socket
 * `<sockDir>/<port>.sock` per forwarded port, each connection piped to 127.0.0.1:<port>. Only
 * loopback ports the sandbox itself serves are forwarded (the apiserver, the registries).
 */
import {createServer, connect, type Server, type Socket} from 'node:net'
import {rmSync} from 'node:fs'
import {splice} from './splice.js'
import {join} from 'node:path'

export interface HostForwarders {
  close(): Promise<void>
}

export async function startHostForwarders(sockDir: string, ports: number[]): Promise<HostForwarders> {
  const servers: Server[] = []
  const open = new Set<Socket>()
  const track = (s: Socket): Socket => {
    open.add(s)
    s.once('close', () => open.delete(s))
    return s
  }
  const closeAll = async (): Promise<void> => {
    const closed = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))))
    // close() waits for every connection to end: one a pod left open (a watch of the apiserver
    // whose process outlived the runner's stop) held a test's teardown until its hook timed out
    for (const s of open) s.destroy()
    await closed
  }
  try {
    for (const port of ports) {
      const path = join(sockDir, `${port}.sock`)
      rmSync(path, {force: true})
      const srv = createServer((client) => splice(track(client), track(connect(port, '127.0.0.1'))))
      // the runner's own event loop must not be held open by forwarders
      srv.unref()
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject)
        srv.listen(path, resolve)
      })
      servers.push(srv)
    }
  } catch (e) {
    await closeAll()
    throw e
  }
  return {close: closeAll}
}
