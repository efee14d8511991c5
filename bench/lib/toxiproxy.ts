/**
 * The WAN profile: toxiproxy (built by scripts/tools.sh) between the tools and the source
 * registry, adding latency each way and a bandwidth cap. toxiproxy applies its toxics to each
 * connection on its own, so the cap is per connection, as a long path limits each TCP stream
 * (window / round-trip time): a tool gains by using more connections, as it would on a real WAN.
 */
import {join} from 'node:path'
import {freePort, startProcess, waitFor, type Proc} from '../../src/sandbox/procs.js'
import {toolPath} from '../../src/sandbox/tools.js'

export interface WanProfile {
  /** added to each direction, ms */
  latencyMs: number
  /** per connection, KiB/s, from the registry to the tool */
  rateKiBps: number
}

export interface WanProxy {
  /** `127.0.0.1:PORT`: the source registry as the tools see it over the WAN */
  host: string
  profile: WanProfile
  stop(): Promise<void>
}

async function api(base: string, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${base}${path}`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body)})
  if (!res.ok) throw new Error(`toxiproxy ${path}: ${res.status} ${await res.text()}`)
}

/** Starts toxiproxy-server with one proxy in front of `upstream` (`127.0.0.1:PORT`). */
export async function startWanProxy(upstream: string, profile: WanProfile, logDir: string): Promise<WanProxy> {
  const [apiPort, listenPort] = [await freePort(), await freePort()]
  const proc: Proc = await startProcess({name: 'toxiproxy', cmd: toolPath('toxiproxy-server'), args: ['-host', '127.0.0.1', '-port', String(apiPort)], logDir: join(logDir)})
  const base = `http://127.0.0.1:${apiPort}`
  try {
    await waitFor(async () => (await fetch(`${base}/version`).then((r) => r.ok, () => false)) || undefined, {what: 'toxiproxy', timeoutMs: 10_000, intervalMs: 50, procs: [proc]})
    await api(base, '/proxies', {name: 'source', listen: `127.0.0.1:${listenPort}`, upstream, enabled: true})
    for (const stream of ['upstream', 'downstream']) {
      await api(base, '/proxies/source/toxics', {name: `latency-${stream}`, type: 'latency', stream, toxicity: 1, attributes: {latency: profile.latencyMs, jitter: 0}})
    }
    await api(base, '/proxies/source/toxics', {name: 'bandwidth', type: 'bandwidth', stream: 'downstream', toxicity: 1, attributes: {rate: profile.rateKiBps}})
  } catch (e) {
    await proc.stop()
    throw e
  }
  return {host: `127.0.0.1:${listenPort}`, profile, stop: () => proc.stop()}
}
