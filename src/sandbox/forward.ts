/**
 * The host half of the pod forwarders (src/cli/sandbox-nsproc.ts is the namespace half): a Unix socket
 * `<sockDir>/<port>.sock` per forwarded port, each connection piped to 127.0.0.1:<port>. Only
 * loopback ports the sandbox itself serves are forwarded (the apiserver, the registries).
 */
import {createServer, connect, type Server} from 'node:net'
import {rmSync} from 'node:fs'
import {splice} from './splice.js'
import {join} from 'node:path'

export interface HostForwarders {
  close(): Promise<void>
}

export async function startHostForwarders(sockDir: string, ports: number[]): Promise<HostForwarders> {
  const servers: Server[] = []
  const closeAll = () => Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => {})
  try {
    for (const port of ports) {
      const path = join(sockDir, `${port}.sock`)
      rmSync(path, {force: true})
      const srv = createServer((client) => splice(client, connect(port, '127.0.0.1')))
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
