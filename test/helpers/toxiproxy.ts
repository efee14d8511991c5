/**
 * Toxiproxy (built by scripts/tools.sh) for network faults between kpi and a registry: one server
 * per test file on loopback, driven through its HTTP API. A proxy listens on a free loopback port
 * and forwards to the registry; toxics (latency, bandwidth, limit_data, timeout, reset_peer) are
 * added and removed while kpi runs.
 */
import {freePort, startProcess, waitFor, type Proc} from '../../src/sandbox/procs.js'
import {toolPath} from '../../src/sandbox/tools.js'

export interface Toxic {
  type: 'latency' | 'bandwidth' | 'slow_close' | 'timeout' | 'reset_peer' | 'slicer' | 'limit_data'
  stream?: 'upstream' | 'downstream'
  attributes: Record<string, number>
  /** fraction of connections it applies to (default 1) */
  toxicity?: number
}

export interface ToxiProxy {
  /** `127.0.0.1:PORT` kpi talks to */
  host: string
  name: string
  addToxic(name: string, t: Toxic): Promise<void>
  removeToxic(name: string): Promise<void>
  /** remove every toxic */
  reset(): Promise<void>
}

export interface Toxiproxy {
  proxy(name: string, upstream: string): Promise<ToxiProxy>
  stop(): Promise<void>
}

export async function startToxiproxy(runDir: string): Promise<Toxiproxy> {
  const apiPort = await freePort()
  const api = `http://127.0.0.1:${apiPort}`
  const proc: Proc = await startProcess({
    name: 'toxiproxy',
    cmd: toolPath('toxiproxy-server'),
    args: ['-host', '127.0.0.1', '-port', String(apiPort)],
    logDir: runDir,
  })
  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${api}${path}`, {method, ...(body === undefined ? {} : {body: JSON.stringify(body), headers: {'content-type': 'application/json'}})})
    const text = await res.text()
    if (!res.ok) throw new Error(`toxiproxy ${method} ${path}: ${res.status} ${text}`)
    return text ? JSON.parse(text) : undefined
  }
  await waitFor(async () => (await fetch(`${api}/version`).then((r) => r.ok, () => false)) || undefined, {timeoutMs: 15_000, what: 'toxiproxy API', procs: [proc]})
  return {
    async proxy(name, upstream) {
      const port = await freePort()
      await call('POST', '/proxies', {name, listen: `127.0.0.1:${port}`, upstream, enabled: true})
      const toxics = new Set<string>()
      return {
        host: `127.0.0.1:${port}`,
        name,
        async addToxic(tname, t) {
          await call('POST', `/proxies/${name}/toxics`, {name: tname, type: t.type, stream: t.stream ?? 'downstream', toxicity: t.toxicity ?? 1, attributes: t.attributes})
          toxics.add(tname)
        },
        async removeToxic(tname) {
          await call('DELETE', `/proxies/${name}/toxics/${tname}`)
          toxics.delete(tname)
        },
        async reset() {
          for (const t of [...toxics]) await this.removeToxic(t)
        },
      }
    },
    stop: () => proc.stop(),
  }
}
