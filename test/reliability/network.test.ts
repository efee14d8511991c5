/**
 * Network and registry faults between kpi and the registries, during `kpi relocate`: toxiproxy
 * (connection reset in the middle of a blob, latency, a bandwidth limit, a stalled connection) and
 * a small HTTP fault proxy (500, 503, 429 with Retry-After), and the destination registry killed
 * and restarted mid-run. After each fault kpi has either completed or failed with one clean line;
 * a walk of the destination finds no manifest that refers to a missing blob; a rerun completes.
 * Every fault runs against two destinations: CNCF distribution, and go-containerregistry's
 * registry, which accepts a manifest whose blobs are missing, so a push-order bug shows there.
 */
import {mkdtemp} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {loadBundle} from '../../src/bundle/load.js'
import {bundleImages, mapBundleImages} from '../../src/bundle/images.js'
import {writeBundleDir} from '../../src/imagegen/index.js'
import {createRegistryClient, parseReference, type OciClient} from '../../src/oci/index.js'
import {startGgcrRegistry, type GgcrRegistry} from '../../src/sandbox/ggcr-registry.js'
import {startRegistry, type Registry} from '../../src/sandbox/registry.js'
import {startSandbox, type Sandbox} from '../../src/sandbox/sandbox.js'
import {expectCleanFailure, startKpi, type CliResult} from '../helpers/cli.js'
import {startFaultProxy, type FaultProxy, type FaultRule} from '../helpers/fault-proxy.js'
import {assertComplete} from '../helpers/images.js'
import {startToxiproxy, type ToxiProxy, type Toxiproxy} from '../helpers/toxiproxy.js'
import {faultInjected} from './ledger.js'
import {sourceManifests, walkDestination} from './walk.js'

interface Destination {
  kind: 'distribution' | 'ggcr'
  host: string
  faults: FaultProxy
  toxi: ToxiProxy
  restart?: () => Promise<void>
}

let work: string
let sb: Sandbox
let toxiproxy: Toxiproxy
let srcToxi: ToxiProxy
/** the sample bundle with every image behind the source's toxiproxy */
let slowBundleDir: string
let candidates: Set<string>
let direct: OciClient
const stops: Array<() => Promise<void>> = []
let n = 0

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-netfault-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1'], scale: 2})
  stops.push(sb.stop)
  toxiproxy = await startToxiproxy(join(work, 'toxiproxy'))
  stops.push(toxiproxy.stop)
  srcToxi = await toxiproxy.proxy('source', sb.public.host)
  slowBundleDir = await writeBundleDir(mapBundleImages(sb.bundle.v1!, (ref) => ref.replace(sb.public.host, srcToxi.host)), join(work, 'bundle-via-toxiproxy'))
  direct = createRegistryClient({plainHttp: () => true, retries: 0})
  candidates = await sourceManifests(direct, sb.bundle.v1!)

})

afterAll(async () => {
  await direct?.close()
  for (const s of stops.reverse()) await s().catch(() => {})
})

/**
 * A new destination registry for each fault, with a fault proxy and a toxiproxy proxy in front:
 * go-containerregistry's registry shares blobs between all its repositories, so one that saw an
 * earlier run would skip the blob phase a fault is meant to hit.
 */
async function newDestination(kind: Destination['kind'], name: string): Promise<Destination> {
  const runDir = join(work, 'dst', name)
  let host: string
  let restart: (() => Promise<void>) | undefined
  if (kind === 'distribution') {
    const r: Registry = await startRegistry({runDir, name: 'dst'})
    stops.push(r.stop)
    host = r.host
    restart = r.restart
  } else {
    const r: GgcrRegistry = await startGgcrRegistry({runDir})
    stops.push(r.stop)
    host = r.host
  }
  const faults = await startFaultProxy(host)
  stops.push(faults.stop)
  return {kind, host, faults, toxi: await toxiproxy.proxy(`dst-${name}`, host), restart}
}

/** Resolves once kpi has started writing below `prefix` (a repository appears in the catalog). */
async function writing(host: string, prefix: string, done: Promise<unknown>): Promise<boolean> {
  let finished = false
  void done.then(() => (finished = true))
  while (!finished) {
    const res = await fetch(`http://${host}/v2/_catalog?n=1000`).catch(() => undefined)
    const repos = res?.ok ? ((await res.json()) as {repositories?: string[] | null}).repositories ?? [] : []
    if (repos.some((r) => r.startsWith(`${prefix}/`))) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return false
}

interface Scenario {
  /** the host kpi pushes to: through the fault proxy or toxiproxy */
  via: (d: Destination) => string
  /** read the source through its toxiproxy */
  slowSource?: boolean
  flags?: string[]
  /** set the fault up before kpi starts */
  before?: (d: Destination) => Promise<void>
  /** once the first image is complete at the destination (kpi is mid-run) */
  midRun?: (d: Destination) => Promise<void>
  /** remove the fault */
  after: (d: Destination) => Promise<void>
  /** what kpi must do under the fault: complete, fail (matching), or either */
  outcome: 'complete' | 'either' | RegExp
  /** more checks on the faulted run */
  check?: (d: Destination, r: CliResult) => void
}

/** Runs kpi under the fault, then the checks every fault shares, and counts it in the ledger. */
async function survive(name: string, kind: Destination['kind'], s: Scenario): Promise<void> {
  const ledger = faultInjected(`network ${name} (${kind})`)
  const prefix = `f${n++}-${name}`
  const d = await newDestination(kind, `${prefix}-${kind}`)
  const lock = join(work, `${prefix}-${kind}.yaml`)
  const env = {...sb.env, KPI_PLAIN_HTTP: [sb.public.host, srcToxi.host, d.host, d.faults.host, d.toxi.host].join(',')}
  const args = ['relocate', '-b', s.slowSource ? slowBundleDir : sb.bundles.v1!, '--to-repo', `${s.via(d)}/${prefix}`, '--lock-output', lock, ...(s.flags ?? [])]
  await s.before?.(d)
  let r: CliResult
  try {
    const run = startKpi(args, env)
    if (s.midRun) {
      const fired = await writing(d.host, prefix, run.done)
      if (fired) await s.midRun(d)
      r = await run.done
      expect(fired, `the fault must land mid-run; kpi finished first:\n${r.stderr}`).toBe(true)
    } else {
      r = await run.done
    }
  } finally {
    await s.after(d)
  }
  if (s.outcome === 'complete') expect(r.code, r.stderr).toBe(0)
  if (r.code !== 0) {
    const line = expectCleanFailure(r)
    if (s.outcome instanceof RegExp) expect(line).toMatch(s.outcome)
  } else {
    expect(s.outcome instanceof RegExp, `kpi was to fail under this fault:\n${r.stdout}`).toBe(false)
  }
  s.check?.(d, r)

  // nothing half-there: every manifest at the destination is complete
  const walk = await walkDestination(direct, d.host, prefix, candidates)
  expect(walk.problems, walk.problems.join('\n')).toEqual([])

  // a rerun, with the fault gone, completes and every image is whole
  const again = await startKpi(args, env).done
  expect(again.code, again.stderr).toBe(0)
  const relocated = (await loadBundle(lock)).bundle
  for (const img of bundleImages(relocated)) {
    const ref = parseReference(img.ref)
    await assertComplete(direct, {registry: d.host, repository: ref.repository}, ref.digest!)
  }
  ledger.survived()
}

const viaFaults = (d: Destination) => d.faults.host
const viaToxi = (d: Destination) => d.toxi.host
const faulted = (rules: FaultRule[]) => ({
  via: viaFaults,
  before: async (d: Destination) => d.faults.set(rules),
  after: async (d: Destination) => d.faults.off(),
})

describe.each(['distribution', 'ggcr'] as const)('registry faults into %s', (kind) => {
  it('500 on the first manifest pushes: retried, completes', async () => {
    await survive('500-manifests', kind, {
      ...faulted([{match: /^PUT \/v2\/.+\/manifests\//, status: 500, times: 3}]),
      outcome: 'complete',
      check: (dest) => expect(dest.faults.served()).toBe(3),
    })
  })

  it('503 on blob requests: retried, completes', async () => {
    await survive('503-blobs', kind, {
      ...faulted([{match: /^(HEAD|POST|PUT) \/v2\/.+\/blobs\//, status: 503, times: 5}]),
      outcome: 'complete',
      check: (dest) => expect(dest.faults.served()).toBe(5),
    })
  })

  it('429 with Retry-After: waits as told, then completes', async () => {
    await survive('429-retry-after', kind, {
      ...faulted([{match: /^PUT \/v2\/.+\/manifests\//, status: 429, times: 1, retryAfter: 2}]),
      outcome: 'complete',
      check: (dest) => {
        const log = dest.faults.log()
        const refused = log.find((e) => e.fault === 429)!
        const retried = log.find((e) => e.key === refused.key && e.at > refused.at && !e.fault)
        expect(retried, 'the refused manifest was pushed again').toBeDefined()
        expect(retried!.at - refused.at).toBeGreaterThanOrEqual(1900)
      },
    })
  })

  it('503 on every manifest push: fails with one line naming the registry, no manifest without its blobs', async () => {
    await survive('503-always', kind, {
      ...faulted([{match: /^PUT \/v2\/.+\/manifests\//, status: 503}]),
      outcome: /answered 503/,
      check: (dest, r) => expect(expectCleanFailure(r)).toContain(dest.faults.host),
    })
  })

  it('500 on every blob upload: fails cleanly, and no manifest reached the registry before its blobs', async () => {
    await survive('500-uploads', kind, {
      ...faulted([{match: /^PUT \/v2\/.+\/blobs\/uploads\//, status: 500}]),
      outcome: /answered 500/,
    })
  })
})

describe.each(['distribution', 'ggcr'] as const)('network faults into %s (toxiproxy)', (kind) => {
  const itOnDistribution = (name: string, fn: () => Promise<void>) => {
    if (kind === 'distribution') it(name, fn)
  }
  it('connections to the destination reset in the middle of blob uploads', async () => {
    await survive('reset-upload', kind, {
      via: viaToxi,
      slowSource: true,
      before: async () => srcToxi.addToxic('slow', {type: 'bandwidth', attributes: {rate: 8000}}),
      // every connection is cut after 256 KiB sent: uploads of bigger blobs break mid-blob
      midRun: async (dest) => dest.toxi.addToxic('cut', {type: 'limit_data', stream: 'upstream', attributes: {bytes: 256 * 1024}}),
      after: async (dest) => {
        await dest.toxi.reset()
        await srcToxi.reset()
      },
      outcome: 'either',
    })
  })

  // a fault on the way that never changes what reaches the registry: one destination is enough
  itOnDistribution('connections to the source reset in the middle of blob downloads', async () => {
    await survive('reset-download', kind, {
      via: viaToxi,
      slowSource: true,
      before: async () => srcToxi.addToxic('cut', {type: 'limit_data', stream: 'downstream', attributes: {bytes: 512 * 1024}}),
      after: async () => srcToxi.reset(),
      outcome: 'either',
    })
  })

  // a fault on the way that never changes what reaches the registry: one destination is enough
  itOnDistribution('latency on every packet: completes', async () => {
    await survive('latency', kind, {
      via: viaToxi,
      before: async (dest) => dest.toxi.addToxic('lag', {type: 'latency', attributes: {latency: 40, jitter: 20}}),
      after: async (dest) => dest.toxi.reset(),
      outcome: 'complete',
    })
  })

  // a fault on the way that never changes what reaches the registry: one destination is enough
  itOnDistribution('a bandwidth limit on the source: completes', async () => {
    await survive('bandwidth', kind, {
      via: viaToxi,
      slowSource: true,
      before: async () => srcToxi.addToxic('narrow', {type: 'bandwidth', attributes: {rate: 6000}}),
      after: async () => srcToxi.reset(),
      outcome: 'complete',
    })
  })

  it('a stalled destination: the timeout fires and the line names the registry', async () => {
    await survive('stall', kind, {
      via: viaToxi,
      slowSource: true,
      flags: ['--registry-timeout', '1s'],
      before: async () => srcToxi.addToxic('slow', {type: 'bandwidth', attributes: {rate: 8000}}),
      // data to the registry is swallowed and the connections stay open: silence
      midRun: async (dest) => dest.toxi.addToxic('stall', {type: 'timeout', stream: 'upstream', attributes: {timeout: 0}}),
      after: async (dest) => {
        await dest.toxi.reset()
        await srcToxi.reset()
      },
      outcome: /stopped answering/,
      check: (dest, r) => expect(expectCleanFailure(r)).toContain(dest.toxi.host),
    })
  })

  if (kind === 'distribution') {
    it('the destination registry killed and restarted mid-run', async () => {
      await survive('restart', kind, {
        via: viaToxi,
        slowSource: true,
        before: async () => srcToxi.addToxic('slow', {type: 'bandwidth', attributes: {rate: 8000}}),
        midRun: async (dest) => dest.restart!(),
        after: async () => srcToxi.reset(),
        outcome: 'either',
      })
    })
  }
})
