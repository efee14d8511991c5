/**
 * `npm run bench`: kpi against every peer and a floor, on the workloads where relocation tools
 * differ, in one run on one machine, each workload at least 3 times in rotating tool order.
 *
 *   npm run bench [-- --quick] [--rounds N] [--tools kpi,floor,...] [--workloads ...] [--json]
 *
 * Workloads (bench/lib/platform.ts: 43 images, 2.1 GiB; --quick: the same at 1/32 scale):
 *   registry-to-registry      v1 from the public registry (plain HTTP) into a fresh registry
 *                             (htpasswd + TLS), loopback
 *   nothing-to-move           the same again into the same registry
 *   patch                     v2 (its patch release) into the registry holding v1
 *   registry-to-registry-wan  v1 through toxiproxy: latency each way and a per-connection cap
 *   registry-to-registry-ggcr v1 into go-containerregistry's registry (TLS, no auth), built with
 *                             the local Go: it hashes with the CPU's SHA extensions, so it spends
 *                             less than half of distribution 2.8's CPU and the tools' own CPU shows
 *   registry-to-registry-https  v1 from the public registry's content served over HTTPS (as every
 *                             public registry serves it) into a fresh registry (htpasswd + TLS):
 *                             each tool decrypts what it reads as well as encrypting what it sends
 *   registry-to-registry-https-wan  the same HTTPS source through the WAN profile: a public
 *                             registry as a platform team really pulls from one
 *   archive-write             v1 from the registry into an archive (file or files)
 *   archive-read              that archive into a fresh registry
 *   archive-write-wan         v1 through the WAN profile into an archive: the air gap's export
 *                             from a public registry
 *   archive-write-https-wan   the same from the HTTPS source through the WAN profile, as a public
 *                             registry really serves it
 *
 * Every run gets a fresh destination registry, so no tool benefits from another's uploads.
 * Results: bench/results/latest.json and latest.md; README.md's table (unless --quick or
 * --no-readme). See bench/README.md.
 */
import {execFile, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {access, constants, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parseArgs} from 'node:util'
import {kpiCacheDir} from '../src/cache-dir.js'
import {createRegistryClient} from '../src/oci/index.js'
import type {RelocationSummary} from '../src/relocate/execute.js'
import {planImages, type Plan} from '../src/relocate/plan.js'
import {registrySource} from '../src/relocate/registry-endpoints.js'
import {bundleRoots} from '../src/relocate/relocate.js'
import {startGgcrRegistry} from '../src/sandbox/ggcr-registry.js'
import {makeCA, type CA} from '../src/sandbox/pki.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'
import {toolVersion, toolVersions} from '../src/sandbox/tools.js'
import {writeFloorPlan} from './lib/floor-plan.js'
import {fmtBytes, fmtMs, markdownHead} from './lib/format.js'
import {fmtLoad, formatMachineFacts, machineFacts, type MachineFacts} from './lib/machine.js'
import {failureText, measure, measurePool, processCpuSeconds, type Measured} from './lib/measure.js'
import {archivePath, copyStep, fromArchiveStep, toArchiveStep, writeImagesLock, PEER_PARALLEL, type Dest, type Job, type ReleaseImage, type Step, type ToolId, type ToolPaths} from './lib/peers.js'
import {preparePlatform, type PlatformRelease} from './lib/platform.js'
import {evictFromCache, primeMemory, settleDisk} from './lib/prime.js'
import {logMark, readLog, requestStats} from './lib/registry-log.js'
import {fastest, median, rotate, round3, spread} from './lib/stats.js'
import {startWanProxy, type WanProxy} from './lib/toxiproxy.js'
import {findKpi, REPO_ROOT, SKOPEO_BIN} from './lib/tools.js'
import {CLUSTER_WORKLOAD_NAMES, clusterChecks, clusterTable, clusterWorkloads, type ClusterWorkload, type UpgradeBenchResult} from './lib/upgrade-results.js'

const MIB = 1 << 20
/** unmeasured rounds of every workload by the floor before the first measured one */
const WARMUP_ROUNDS = 2
// The floor behind the WAN profile ranges every blob kpi ranges (16 MiB and more) with as many parts
// in flight per blob as kpi fetches ahead. With 32 MiB and 4 parts kpi beat it (11.62 s against
// 11.86, 12:45 UTC run), so it was no floor; with these it took 9.34-10.71 s and the WAN archive
// write 6.28-6.48 s (8.0-8.4 before), holding up to 1 GiB of parts in memory, as a floor may.
const WAN_FLOOR_ARGS = ['-range-min', String(16 * MIB), '-range-chunk', String(8 * MIB), '-range-parts', '8']
const ALL_TOOLS: ToolId[] = ['kpi', 'kpi-base', 'floor', 'imgpkg', 'crane', 'skopeo', 'regctl', 'oras']
const PEERS: ToolId[] = ['imgpkg', 'crane', 'skopeo', 'regctl', 'oras']
const WORKLOADS = ['registry-to-registry', 'nothing-to-move', 'patch', 'registry-to-registry-wan', 'registry-to-registry-ggcr', 'registry-to-registry-https', 'registry-to-registry-https-wan', 'archive-write', 'archive-write-durable', 'archive-read', 'archive-write-wan', 'archive-write-https-wan'] as const
type WorkloadName = (typeof WORKLOADS)[number]

const {values: flags} = parseArgs({
  options: {
    quick: {type: 'boolean', default: false},
    scale: {type: 'string'},
    rounds: {type: 'string'},
    tools: {type: 'string'},
    workloads: {type: 'string'},
    'wan-latency-ms': {type: 'string', default: '25'},
    'wan-rate-mib': {type: 'string', default: '25'},
    'kpi-bin': {type: 'string'},
    'base-bin': {type: 'string'},
    'no-build': {type: 'boolean', default: false},
    'no-readme': {type: 'boolean', default: false},
    'no-upgrade': {type: 'boolean', default: false},
    'no-merge': {type: 'boolean', default: false},
    'no-warmup': {type: 'boolean', default: false},
    out: {type: 'string'},
    json: {type: 'boolean', default: false},
    keep: {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
  strict: true,
})

if (flags.help) {
  process.stdout.write(`npm run bench -- [options]
  --quick             the platform at 1/32 scale (about 70 MiB), results not written to README.md
  --scale N           size multiplier of the platform (default 1: 2.1 GiB)
  --rounds N          runs of every workload per tool (default 3)
  --tools LIST        of ${ALL_TOOLS.join(',')} (default all that are built)
  --workloads LIST    of ${WORKLOADS.join(',')},
                      ${CLUSTER_WORKLOAD_NAMES.join(',')} (default all; any of the last
                      four runs bench/upgrade.ts, which measures all four)
  --wan-latency-ms N  WAN profile: added each way (default 25)
  --wan-rate-mib N    WAN profile: MiB/s per connection from the source (default 25)
  --kpi-bin FILE      another kpi build's bin/run.js
  --base-bin FILE     a second kpi build's bin/run.js, measured as the tool kpi-base beside kpi
                      (a change against its base, in the same conditions)
  --no-build          do not run scripts/tools.sh for missing peers
  --no-readme         do not update README.md
  --no-upgrade        do not run bench/upgrade.ts
  --no-merge          do not keep the workloads this run leaves out from the existing latest.json
  --no-warmup         no unmeasured runs of each workload before the first round
  --out DIR           where latest.json and latest.md go (default bench/results)
  --json              print the JSON document on stdout
  --keep              keep the run directory
`)
  process.exit(0)
}

const num = (name: string, v: string | undefined, dflt: number): number => {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!(n > 0 && Number.isFinite(n))) {
    process.stderr.write(`--${name} "${v}" is not a positive number\n`)
    process.exit(2)
  }
  return n
}
const scale = num('scale', flags.scale, flags.quick ? 1 / 32 : 1)
const rounds = Math.max(1, Math.round(num('rounds', flags.rounds, 3)))
const wanProfile = {latencyMs: num('wan-latency-ms', flags['wan-latency-ms'], 25), rateKiBps: Math.round(num('wan-rate-mib', flags['wan-rate-mib'], 25) * 1024)}
const listFlag = <T extends string>(name: string, v: string | undefined, all: readonly T[]): T[] => {
  if (!v) return [...all]
  const out = v.split(',').map((s) => s.trim()).filter(Boolean)
  for (const x of out) {
    if (!all.includes(x as T)) {
      process.stderr.write(`--${name}: unknown "${x}"; use ${all.join(', ')}\n`)
      process.exit(2)
    }
  }
  return out as T[]
}
if (flags.tools?.split(',').includes('kpi-base') && !flags['base-bin']) {
  process.stderr.write('--tools kpi-base: the build to measure is --base-bin FILE (its bin/run.js)\n')
  process.exit(2)
}
const wantedTools = listFlag('tools', flags.tools, ALL_TOOLS).filter((t) => t !== 'kpi-base' || flags['base-bin'])
const listed = listFlag('workloads', flags.workloads, [...WORKLOADS, ...CLUSTER_WORKLOAD_NAMES])
const listedWorkloads = listed.filter((w): w is WorkloadName => (WORKLOADS as readonly string[]).includes(w))
// bench/upgrade.ts measures the four cluster workloads together: it runs when --workloads names
// any of them (or is not given)
const wantsClusterWorkloads = !flags.workloads || listed.some((w) => CLUSTER_WORKLOAD_NAMES.includes(w))
// archive-write-durable is archive-write's runs with the sync after them: one comes with the other
const wantedWorkloads: WorkloadName[] = listedWorkloads.some((w) => w === 'archive-write' || w === 'archive-write-durable')
  ? [...new Set([...listedWorkloads, 'archive-write', 'archive-write-durable'] as const)]
  : listedWorkloads
const outDir = flags.out ?? join(REPO_ROOT, 'bench', 'results')

const say = (line: string): void => void process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`)

// ---- tools ----

function exec(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) => execFile(cmd, args, {timeout: 20_000}, (err, out, errOut) => resolve(err ? '' : `${out}${errOut}`.trim())))
}

const cachedBinary = (name: string, version: string | undefined): string | undefined =>
  version ? join(kpiCacheDir(), `${name}-${version}`, 'bin', name) : undefined

/** Where scripts/tools.sh puts each peer, with the versions.env key of its version. */
const peerKeys: Partial<Record<ToolId, [string, string]>> = {
  crane: ['crane', 'CRANE_VERSION'],
  imgpkg: ['imgpkg', 'IMGPKG_VERSION'],
  regctl: ['regctl', 'REGCTL_VERSION'],
  oras: ['oras', 'ORAS_VERSION'],
  floor: ['floor', 'FLOOR_VERSION'],
}

const UPGRADE_TOOLS: Array<[string, string]> = [
  ['kube-apiserver', 'KUBERNETES_VERSION'], ['kube-controller-manager', 'KUBERNETES_VERSION'], ['kube-scheduler', 'KUBERNETES_VERSION'],
  ['kubectl', 'KUBERNETES_VERSION'], ['etcd', 'ETCD_VERSION'], ['kwok', 'KWOK_VERSION'], ['helm', 'HELM_VERSION'], ['kapp', 'KAPP_VERSION'],
]
const UPGRADE_BENCH = join(REPO_ROOT, 'bench', 'upgrade.ts')
const wantsUpgradeBench = (): boolean => wantsClusterWorkloads && !flags['no-upgrade'] && existsSync(UPGRADE_BENCH)

const executable = (p: string | undefined): Promise<boolean> => (p ? access(p, constants.X_OK).then(() => true, () => false) : Promise.resolve(false))

async function ensureTools(): Promise<void> {
  const missing: string[] = []
  const v = toolVersions()
  for (const t of wantedTools) {
    const k = peerKeys[t]
    if (k && v[k[1]] && !(await executable(cachedBinary(k[0], v[k[1]])))) missing.push(k[0])
  }
  if (wantedWorkloads.some((w) => w.endsWith('-wan')) && !(await executable(cachedBinary('toxiproxy-server', v.TOXIPROXY_VERSION)))) missing.push('toxiproxy-server')
  if (wantedWorkloads.includes('registry-to-registry-ggcr') && !(await executable(cachedBinary('ggcr-registry', toolVersion('ggcr-registry'))))) missing.push('ggcr-registry')
  // bench/upgrade.ts: its control plane, and Helm 4, kapp and kubectl (a peer, and what applies Helm's CRDs)
  if (wantsUpgradeBench()) {
    for (const [tool, key] of UPGRADE_TOOLS) if (v[key] && !(await executable(cachedBinary(tool, v[key])))) missing.push(tool)
  }
  if (missing.length === 0 || flags['no-build']) return
  say(`building ${missing.join(', ')} with scripts/tools.sh (once; cached in ${kpiCacheDir()})`)
  await new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [join(REPO_ROOT, 'scripts', 'tools.sh'), ...missing], {stdio: ['ignore', 'inherit', 'inherit']})
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`scripts/tools.sh ${missing.join(' ')} exited with ${code}`))))
  })
}

interface ToolInfo {
  id: ToolId
  version?: string
  skipped?: string
}

async function findTools(): Promise<{paths: ToolPaths; infos: ToolInfo[]}> {
  const v = toolVersions()
  const kpi = flags['kpi-bin'] ? {path: flags['kpi-bin'], version: 'from --kpi-bin'} : await findKpi()
  if ('note' in kpi && kpi.note) say(`warning: ${kpi.note}`)
  const paths: ToolPaths = {node: process.execPath, kpi: kpi.path!}
  const infos: ToolInfo[] = []
  for (const t of wantedTools) {
    if (t === 'kpi') {
      infos.push({id: t, version: kpi.version})
      continue
    }
    if (t === 'kpi-base') {
      paths['kpi-base'] = flags['base-bin']
      infos.push({id: t, version: 'from --base-bin'})
      continue
    }
    if (t === 'skopeo') {
      if (await executable(SKOPEO_BIN)) {
        paths.skopeo = SKOPEO_BIN
        infos.push({id: t, version: (await exec(SKOPEO_BIN, ['--version'])).replace(/^skopeo version /, '')})
      } else infos.push({id: t, skipped: `${SKOPEO_BIN} not found (apt-get install skopeo)`})
      continue
    }
    const [name, key] = peerKeys[t]!
    const p = cachedBinary(name, v[key])
    if (!(await executable(p))) {
      infos.push({id: t, skipped: v[key] ? `${p} not built (bash scripts/tools.sh ${name})` : `no ${key} in tools/versions.env`})
      continue
    }
    paths[t] = p
    infos.push({id: t, version: v[key]})
  }
  return {paths, infos}
}

// ---- registries ----

/** a registry a run is observed at: its CPU, and its requests where it writes distribution's access log */
type Observable = Pick<Registry, 'pid'> & {logFile?: string}

interface DestRegistry extends Dest {
  registry: Observable
  dispose(): Promise<void>
}

const USER = 'bench'
const PASSWORD = `bench-${Math.random().toString(36).slice(2, 12)}`

/**
 * A destination for one run: a docker config with the bench account for its host (the peers read
 * credentials from there; a registry without authentication never asks for them), and its
 * directory removed before the next measured run.
 */
async function asDest(dir: string, registry: Observable & {host: string; caFile?: string; stop(): Promise<void>}): Promise<DestRegistry> {
  const dockerConfigDir = join(dir, 'docker')
  await mkdir(dockerConfigDir, {recursive: true})
  const auth = Buffer.from(`${USER}:${PASSWORD}`).toString('base64')
  await writeFile(join(dockerConfigDir, 'config.json'), JSON.stringify({auths: {[registry.host]: {auth}}}) + '\n', {mode: 0o600})
  return {
    registry: {pid: registry.pid, logFile: registry.logFile}, host: registry.host, caFile: registry.caFile!, username: USER, password: PASSWORD, dockerConfigDir,
    dispose: async () => {
      await registry.stop()
      if (!flags.keep) removeLater(dir)
    },
  }
}

async function freshDest(workDir: string, ca: CA, label: string): Promise<DestRegistry> {
  const dir = join(workDir, 'dest', label)
  return asDest(dir, await startRegistry({runDir: dir, name: 'dest', auth: {username: USER, password: PASSWORD}, tls: {ca}}))
}

/** A fresh go-containerregistry registry: no authentication, and no access log to count requests from. */
async function freshGgcrDest(workDir: string, ca: CA, label: string): Promise<DestRegistry> {
  const dir = join(workDir, 'dest', label)
  const registry = await startGgcrRegistry({runDir: dir, name: 'dest', tls: {ca}})
  return asDest(dir, {host: registry.host, caFile: registry.caFile, pid: registry.pid, stop: registry.stop})
}

// ---- one measured run ----

interface RunRecord {
  round: number
  ok: boolean
  reason?: string
  wallS: number
  cpuS?: number
  peakRssBytes?: number
  processes: number
  /** blob bytes the destination received (completed uploads in its log x blob size) */
  bytesMoved?: number
  /** blob bytes the source served */
  sourceBytes: number
  destRequests?: number
  sourceRequests: number
  /** CPU seconds the source and destination registries spent during the run (serving this tool) */
  sourceCpuS?: number
  destCpuS?: number
  /** kpi's own summary, when it printed one */
  kpiBytesMoved?: number
  /** seconds a `sync` took right after the run: what the tool left in the page cache for the disk */
  syncAfterS?: number
}

async function runStep(step: Step): Promise<{wallMs: number; cpuS?: number; peakRssBytes?: number; processes: number; failure?: string; last?: Measured}> {
  if (step.kind === 'one') {
    const m = await measure(step.spec)
    return {wallMs: m.wallMs, cpuS: m.cpuS, peakRssBytes: m.peakRssBytes, processes: 1, failure: m.code === 0 ? undefined : failureText(m), last: m}
  }
  const loop = await measurePool(step.specs, step.concurrency)
  return {wallMs: loop.wallMs, cpuS: loop.cpuS, peakRssBytes: loop.peakRssBytes, processes: loop.runs.length, failure: loop.failures[0] ? failureText(loop.failures[0]) : undefined}
}

function kpiSummary(m: Measured | undefined): RelocationSummary | undefined {
  for (const line of (m?.stdout ?? '').split('\n').reverse()) {
    if (!line.startsWith('{')) continue
    try {
      const o = JSON.parse(line) as {summary?: RelocationSummary}
      if (o.summary) return o.summary
    } catch {
      // not the result line
    }
  }
  return undefined
}

/**
 * What a run wrote (its registry's blobs, its archive) is removed just before the next measured
 * run starts, not when the run ends: its pages are then freed a moment before they are needed
 * again, which on this machine's host makes the difference (lib/prime.ts).
 */
const toRemove: string[] = []
const removeLater = (dir: string): void => void toRemove.push(dir)
/** removes the oldest (one run's worth: an archive read frees the archive of the tool before) */
const removeNow = async (): Promise<boolean> => {
  const dir = toRemove.shift()
  if (dir) await rm(dir, {recursive: true, force: true})
  return dir !== undefined
}

/** where primeMemory writes its file: the run directory, on the disk the tools write to */
let primeDir = ''
let firstRun = true
/** bytes made ready before the first measured run */
let primeFirst = 0

/**
 * Runs one measured step: `prime` is the bytes it will write to the page cache (the destination
 * registry's blobs, an archive), made ready just before it starts (lib/prime.ts).
 */
async function observed(round: number, step: Step, regs: {source: Registry; dest?: Observable}, sizes: Map<string, number>, prime = 0, syncAfter = false): Promise<RunRecord> {
  const srcMark = await logMark(regs.source.logFile)
  const destLog = regs.dest?.logFile
  const destMark = destLog ? await logMark(destLog) : 0
  // removed before the sync: their dirty pages are dropped, not written
  const freed = await removeNow()
  const syncMs = await settleDisk()
  // nothing freed (the first run of all, an archive read): memory made ready instead
  const primeMs = freed ? 0 : await primeMemory(primeDir, firstRun ? Math.max(prime, primeFirst) : prime)
  firstRun = false
  if (primeMs + syncMs > 3000) say(`  (dirty pages written in ${fmtMs(syncMs)}, memory made ready in ${fmtMs(primeMs)}; not measured)`)
  const cpu = () => Promise.all([processCpuSeconds(regs.source.pid()), processCpuSeconds(regs.dest?.pid())])
  const [srcCpu0, destCpu0] = await cpu()
  const r = await runStep(step)
  const [srcCpu1, destCpu1] = await cpu()
  const delta = (a?: number, b?: number) => (a !== undefined && b !== undefined ? round3(b - a) : undefined)
  const syncAfterS = syncAfter && !r.failure ? (await settleDisk()) / 1000 : undefined
  // distribution logs a request just after answering it
  await new Promise((res) => setTimeout(res, 250))
  const source = requestStats(await readLog(regs.source.logFile, srcMark), sizes)
  const dest = destLog ? requestStats(await readLog(destLog, destMark), sizes) : undefined
  return {
    round, ok: !r.failure, reason: r.failure, wallS: r.wallMs / 1000, cpuS: r.cpuS, peakRssBytes: r.peakRssBytes, processes: r.processes,
    bytesMoved: dest?.bytesReceived, sourceBytes: source.blobBytesServed, destRequests: dest?.total, sourceRequests: source.total,
    sourceCpuS: delta(srcCpu0, srcCpu1), destCpuS: delta(destCpu0, destCpu1),
    kpiBytesMoved: kpiSummary(r.last)?.bytesMoved, syncAfterS,
  }
}

// ---- the report ----

interface WorkloadResult {
  name: WorkloadName
  description: string
  /** when the run that measured it started (a workload kept from an earlier run keeps its own) */
  measured_at?: string
  [key: `${string}_s`]: number | undefined
  ratio_vs_best_peer?: number
  best_peer?: string
  ratio_vs_floor?: number
  /** the bytes this workload must move at least (unique bytes, changed bytes, 0) */
  bytes_needed: number
  bytes_moved: Record<string, number | undefined>
  peak_rss_bytes: Record<string, number | undefined>
  cpu_seconds: Record<string, number | undefined>
  /** medians of the CPU seconds the registries spent serving each tool (the WAN proxy not counted) */
  registry_cpu_seconds?: Record<string, {source?: number; dest?: number}>
  spread: Record<string, number | undefined>
  runs: Record<string, RunRecord[]>
}

const description: Record<WorkloadName, string> = {
  'registry-to-registry': 'v1, public registry (plain HTTP) to a fresh registry (htpasswd + TLS), loopback',
  'nothing-to-move': 'v1 again into the same registry: nothing to move',
  patch: 'v2 (patch release) into the registry holding v1',
  'registry-to-registry-wan': 'v1 through the WAN profile (toxiproxy on the source)',
  'registry-to-registry-ggcr': 'v1 into go-containerregistry\'s registry (TLS, built with current Go: SHA-256 on the CPU\'s SHA extensions), loopback',
  'registry-to-registry-https': 'v1 from the public registry over HTTPS (its content, served by a second registry with TLS) to a fresh registry (htpasswd + TLS), loopback',
  'registry-to-registry-https-wan': 'v1 from the public registry over HTTPS through the WAN profile (toxiproxy in front of the TLS registry)',
  'archive-write': 'v1 from the public registry into an archive',
  'archive-write-durable': 'the same archive until it is on disk: the run, then a sync of what it left in the page cache (the floor: its own run around the page cache, synced)',
  'archive-read': 'that archive into a fresh registry',
  'archive-write-wan': 'v1 through the WAN profile into an archive (the air gap\'s export from a public registry)',
  'archive-write-https-wan': 'v1 from the public registry over HTTPS through the WAN profile into an archive (the air gap\'s export as a public registry serves it)',
}

function summarize(name: WorkloadName, records: Map<ToolId, RunRecord[]>, bytesNeeded: number): WorkloadResult {
  const w: WorkloadResult = {name, description: description[name], bytes_needed: bytesNeeded, bytes_moved: {}, peak_rss_bytes: {}, cpu_seconds: {}, spread: {}, runs: {}}
  const registryCpu: NonNullable<WorkloadResult['registry_cpu_seconds']> = (w.registry_cpu_seconds = {})
  for (const [tool, rs] of records) {
    w.runs[tool] = rs
    const ok = rs.filter((r) => r.ok)
    if (ok.length === 0) continue
    w[`${tool}_s`] = round3(median(ok.map((r) => r.wallS)))
    w.spread[tool] = round3(spread(ok.map((r) => r.wallS)))
    w.cpu_seconds[tool] = round3(median(ok.map((r) => r.cpuS).filter((x): x is number => x !== undefined)))
    const regCpu = (k: 'sourceCpuS' | 'destCpuS') => {
      const xs = ok.map((r) => r[k]).filter((x): x is number => x !== undefined)
      return xs.length ? round3(median(xs)) : undefined
    }
    registryCpu[tool] = {source: regCpu('sourceCpuS'), dest: regCpu('destCpuS')}
    w.bytes_moved[tool] = median(ok.map((r) => r.bytesMoved).filter((x): x is number => x !== undefined))
    const rss = ok.map((r) => r.peakRssBytes).filter((x): x is number => x !== undefined)
    w.peak_rss_bytes[tool] = rss.length ? Math.max(...rss) : undefined
  }
  const kpi = w.kpi_s
  const best = fastest(PEERS.map((p) => [p, w[`${p}_s`]] as const).filter((x): x is readonly [ToolId, number] => x[1] !== undefined))
  if (kpi && best) {
    const [peer, t] = best
    w.best_peer = peer
    w.ratio_vs_best_peer = round3(t / kpi)
  }
  if (kpi && w.floor_s) w.ratio_vs_floor = round3(w.floor_s / kpi)
  return w
}

const isRelocation = (w: WorkloadResult | ClusterWorkload): w is WorkloadResult => (WORKLOADS as readonly string[]).includes(w.name)

function markdown(report: Report): string {
  const earlier = (w: WorkloadResult) => w.measured_at !== undefined && w.measured_at !== report.machine.date
  const relocation = report.workloads.filter(isRelocation)
  const tools = ALL_TOOLS.filter((t) => report.tools.some((i) => i.id === t && !i.skipped))
  const out: string[] = []
  const m = report.machine
  out.push(`Measured ${m.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cores} cores (${m.cpuModel}), ${(m.memTotalBytes / 2 ** 30).toFixed(0)} GiB, ${m.os}, node ${m.node}; load ${fmtLoad(m.loadavg)} at the start, ${fmtLoad(report.machineAtEnd.loadavg)} at the end (a shared machine: compare within the run). `
    + `Platform: ${report.platform.images} images, ${fmtBytes(report.platform.uniqueBytes)} of unique blobs; its patch release changes ${fmtBytes(report.platform.changedBytes)}. `
    + `Medians of ${report.partialRound ? `${report.roundsDone + 1} rounds, the last one cut short (some workloads have a run fewer)` : `${report.roundsDone} rounds`}, tools in rotating order; seconds, ± half the spread ((max-min)/median). Per-image peers run ${PEER_PARALLEL} images at a time. `
    + `WAN: toxiproxy on the source, ${report.wan.latencyMs} ms each way, ${(report.wan.rateKiBps / 1024).toFixed(0)} MiB/s per connection.`)
  out.push('')
  const head = ['workload', ...tools.map((t) => (t === 'floor' ? 'floor' : t)), 'best peer / kpi', 'floor / kpi']
  out.push(...markdownHead(head))
  for (const w of relocation) {
    const cells = tools.map((t) => {
      const s = w[`${t}_s`]
      if (s === undefined) return w.runs[t]?.length ? 'failed' : '-'
      const sp = w.spread[t]
      return `${s.toFixed(2)}${sp !== undefined ? ` ±${Math.round(sp * 50)}%` : ''}`
    })
    const ratio = w.ratio_vs_best_peer !== undefined ? `${w.ratio_vs_best_peer.toFixed(2)}x (${w.best_peer})` : '-'
    const floor = w.ratio_vs_floor !== undefined ? w.ratio_vs_floor.toFixed(2) : '-'
    out.push(`| ${w.name}${earlier(w) ? ' *' : ''} | ${cells.join(' | ')} | ${ratio} | ${floor} |`)
  }
  const kept = relocation.filter(earlier)
  if (kept.length) {
    const dates = [...new Set(kept.map((w) => w.measured_at!.slice(0, 16).replace('T', ' ')))]
    out.push('')
    out.push(`\\* measured in an earlier run (${dates.join(', ')} UTC), kept because this run left the workload out.`)
  }
  out.push('')
  out.push('Bytes moved (blob bytes the destination received, from its log) and peak RSS (largest process):')
  out.push('')
  out.push(...markdownHead(['workload', 'needed', ...tools]))
  // the durable row's runs are archive-write's: the same bytes and memory
  for (const w of relocation.filter((x) => x.name !== 'archive-write-durable')) {
    const cells = tools.map((t) => {
      const b = w.bytes_moved[t]
      const r = w.peak_rss_bytes[t]
      if (b === undefined && r === undefined) return '-'
      return `${b !== undefined ? fmtBytes(b) : '-'} / ${r !== undefined ? fmtBytes(r) : '-'}`
    })
    out.push(`| ${w.name} | ${fmtBytes(w.bytes_needed)} | ${cells.join(' | ')} |`)
  }
  out.push('')
  out.push('CPU seconds of a run: the tool\'s own / what the source registry spent serving it / the destination registry\'s (the two cores are shared by all three):')
  out.push('')
  out.push(...markdownHead(['workload', ...tools]))
  for (const w of relocation.filter((x) => x.name !== 'archive-write-durable')) {
    const f = (x?: number) => (x !== undefined ? x.toFixed(1) : '-')
    const cells = tools.map((t) => {
      const c = w.cpu_seconds[t]
      // absent in a workload kept from a results file written before it was measured
      const reg = w.registry_cpu_seconds?.[t]
      if (c === undefined && reg === undefined) return '-'
      return [f(c), f(reg?.source), ...(reg?.dest !== undefined ? [f(reg.dest)] : [])].join(' / ')
    })
    out.push(`| ${w.name} | ${cells.join(' | ')} |`)
  }
  const cluster = clusterTable(report.workloads.filter((w): w is ClusterWorkload => !isRelocation(w)), report.upgrade)
  if (cluster.length) out.push('', ...cluster)
  if (report.checks.length) {
    out.push('')
    for (const c of report.checks) out.push(`- ${c.ok ? 'ok' : 'MISS'}: ${c.name}: ${c.detail}`)
  }
  return out.join('\n') + '\n'
}

interface Report {
  benchmark: 'kpi-vs-peers'
  machine: MachineFacts
  machineAtEnd: MachineFacts
  scale: number
  rounds: number
  wan: {latencyMs: number; rateKiBps: number; perConnection: true}
  platform: {images: number; manifests: number; blobs: number; uniqueBytes: number; changedBytes: number; changedBlobs: number; largestBlob: number}
  tools: ToolInfo[]
  /** the relocation workloads, then install, upgrade, rollback and recovery (from `upgrade`) */
  workloads: Array<WorkloadResult | ClusterWorkload>
  checks: Array<{name: string; ok: boolean; detail: string}>
  upgrade?: UpgradeBenchResult
  /** rounds finished when this was written (the run writes after every round) */
  roundsDone: number
  /** written in the middle of a round: some workloads have one run more than others */
  partialRound: boolean
  setupS: number
  totalS: number
}

// ---- main ----

function releaseImages(r: PlatformRelease): ReleaseImage[] {
  const seen = new Map<string, ReleaseImage>()
  for (const i of r.sample.images) seen.set(`${i.repository}@${i.digest}`, {repository: i.repository, tag: i.tag, digest: i.digest})
  return [...seen.values()]
}

async function planOf(release: PlatformRelease, host: string): Promise<Plan> {
  const client = createRegistryClient({plainHttp: (r) => r === host})
  try {
    return await planImages(registrySource(client), bundleRoots(release.bundleAt(host), {registry: host, prefix: 'bench'}))
  } finally {
    await client.close()
  }
}

async function runUpgradeBench(): Promise<UpgradeBenchResult | undefined> {
  if (!wantsUpgradeBench()) return undefined
  say('bench/upgrade.ts: install, upgrade and rollback against helm, kapp and kubectl')
  const m = await measure({cmd: process.execPath, args: [join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), UPGRADE_BENCH, '--json', ...(flags.quick ? ['--quick'] : [])], label: 'bench/upgrade.ts'})
  const line = m.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'))
  const text = m.stdout.trim().startsWith('{') ? m.stdout.trim() : line
  try {
    return text ? JSON.parse(text) : {ok: false, reason: failureText(m)}
  } catch {
    return {ok: false, reason: failureText(m)}
  }
}

async function main(): Promise<number> {
  const started = performance.now()
  await ensureTools()
  const {paths, infos} = await findTools()
  for (const i of infos) say(i.skipped ? `skipping ${i.id}: ${i.skipped}` : `${i.id} ${i.version ?? ''}`)
  const tools = infos.filter((i) => !i.skipped).map((i) => i.id)
  const machine = machineFacts()
  const workDir = join(flags.keep ? outDir : (process.env.TMPDIR ?? '/tmp'), `kpi-bench-${process.pid}`)
  await mkdir(workDir, {recursive: true})
  primeDir = workDir
  const stops: Array<() => Promise<void>> = []
  const cleanup = async () => {
    for (const s of stops.reverse()) await s().catch(() => {})
    stops.length = 0
    if (!flags.keep) await rm(workDir, {recursive: true, force: true, maxRetries: 3})
  }
  const onSignal = () => void cleanup().finally(() => process.exit(130))
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    say(`machine: ${formatMachineFacts(machine).split('\n').slice(1).join('; ')}`)
    const ca = await makeCA(join(workDir, 'ca'), 'kpi bench CA')
    const pub = await startRegistry({runDir: join(workDir, 'public'), name: 'public'})
    stops.push(pub.stop)
    say(`generating the platform at scale ${scale} and pushing v1 and v2 to ${pub.host}`)
    const platform = await preparePlatform(pub.host, workDir, scale)
    const [plan1, plan2] = [await planOf(platform.v1, pub.host), await planOf(platform.v2, pub.host)]
    const sizes = new Map<string, number>()
    for (const p of [plan1, plan2]) for (const b of p.blobs.values()) sizes.set(b.digest, b.size)
    const changed = [...plan2.blobs.values()].filter((b) => !plan1.blobs.has(b.digest))
    const changedBytes = changed.reduce((a, b) => a + b.size, 0)
    const have = {blobs: new Set(plan1.blobs.keys()), manifests: new Set(plan1.manifests.map((m) => m.manifest.digest))}
    const largestBlob = Math.max(...[...plan1.blobs.values()].map((b) => b.size))
    say(`platform: ${plan1.roots.length} images, ${plan1.manifests.length} manifests, ${plan1.blobs.size} blobs, ${fmtBytes(plan1.uniqueBytes)} (largest ${fmtBytes(largestBlob)}); patch: ${changed.length} blobs, ${fmtBytes(changedBytes)}`)
    // the same content over HTTPS: a second registry on the public one's storage, nothing pushed twice
    let pubTls: Registry | undefined
    /** whether the run measures any of these workloads */
    const want = (...ws: WorkloadName[]): boolean => ws.some((w) => wantedWorkloads.includes(w))
    if (want('registry-to-registry-https', 'registry-to-registry-https-wan', 'archive-write-https-wan')) {
      pubTls = await startRegistry({runDir: join(workDir, 'public-tls'), name: 'public-tls', tls: {ca}, dataDir: pub.dataDir})
      stops.push(pubTls.stop)
    }
    let wan: WanProxy | undefined
    if (wantedWorkloads.some((w) => w.endsWith('-wan'))) {
      wan = await startWanProxy(pub.host, wanProfile, join(workDir, 'toxiproxy'))
      stops.push(wan.stop)
      say(`WAN profile: ${wan.host} -> ${pub.host}, ${wanProfile.latencyMs} ms each way, ${wanProfile.rateKiBps} KiB/s per connection`)
    }
    // TLS passes through toxiproxy untouched: the tools verify the registry's certificate (issued for 127.0.0.1) behind it
    let wanTls: WanProxy | undefined
    if (want('registry-to-registry-https-wan', 'archive-write-https-wan') && pubTls) {
      wanTls = await startWanProxy(pubTls.host, wanProfile, join(workDir, 'toxiproxy-tls'))
      stops.push(wanTls.stop)
      say(`WAN profile over HTTPS: ${wanTls.host} -> ${pubTls.host}`)
    }
    const setupS = (performance.now() - started) / 1000

    const images = {v1: releaseImages(platform.v1), v2: releaseImages(platform.v2)}
    const job = async (release: PlatformRelease, srcHost: string, dir: string, floorPlan: string): Promise<Job> => {
      await mkdir(dir, {recursive: true})
      return {
        srcHost, images: images[release.version], bundleDir: await release.bundleDir(srcHost),
        imagesLock: await writeImagesLock(join(dir, `images-${release.version}.lock.yml`), srcHost, images[release.version]),
        floorPlan, workDir: dir,
      }
    }
    /**
     * A job through the WAN profile, its floor plan written. Behind a per-connection cap a floor
     * must fetch big blobs in parallel ranges too (kpi does, see src/oci/ranged.ts); a
     * one-connection-per-blob floor was beaten by kpi.
     */
    const wanJob = async (proxy: WanProxy, dir: string, fp: string, dest: {url: string}, caFile?: string): Promise<Job> => {
      const j = {...await job(platform.v1, proxy.host, dir, fp), floorArgs: WAN_FLOOR_ARGS, ...(caFile ? {srcCaFile: caFile} : {})}
      await writeFloorPlan(fp, plan1, {source: caFile ? {url: `https://${proxy.host}`, caFile} : {url: `http://${proxy.host}`}, dest})
      return j
    }
    const destEndpoint = (d: Dest) => ({url: `https://${d.host}`, username: d.username, password: d.password, caFile: d.caFile})
    const records = new Map<WorkloadName, Map<ToolId, RunRecord[]>>(WORKLOADS.map((w) => [w, new Map()]))
    /** the warm-up round: its runs are not counted */
    let warming = false
    const record = (w: WorkloadName, t: ToolId, r: RunRecord) => {
      if (warming) return say(`  ${w} ${t}: ${r.ok ? `${r.wallS.toFixed(2)} s` : `FAILED: ${r.reason}`} (warm-up, not counted)`)
      const m = records.get(w)!
      m.set(t, [...(m.get(t) ?? []), r])
      const moved = r.bytesMoved !== undefined ? `, ${fmtBytes(r.bytesMoved)} moved` : ''
      say(`  ${w} ${t}: ${r.ok ? `${r.wallS.toFixed(2)} s${moved}, cpu ${r.cpuS?.toFixed(1)} s${r.sourceCpuS !== undefined ? ` (registries ${r.sourceCpuS.toFixed(1)}${r.destCpuS !== undefined ? ` + ${r.destCpuS.toFixed(1)}` : ''})` : ''}, peak RSS ${fmtBytes(r.peakRssBytes)}` : `FAILED: ${r.reason}`}`)
    }
    /** Aggregates the rounds done so far and writes the results (after every round: a run cut short still reports). */
    const report = async (roundsDone: number, upgrade?: UpgradeBenchResult, partial = false): Promise<void> => {
      if (warming) return
      const needed: Record<WorkloadName, number> = {
        'registry-to-registry': plan1.uniqueBytes, 'nothing-to-move': 0, patch: changedBytes,
        'registry-to-registry-wan': plan1.uniqueBytes, 'registry-to-registry-ggcr': plan1.uniqueBytes, 'registry-to-registry-https': plan1.uniqueBytes, 'registry-to-registry-https-wan': plan1.uniqueBytes, 'archive-write': plan1.uniqueBytes, 'archive-write-durable': plan1.uniqueBytes, 'archive-read': plan1.uniqueBytes,
        'archive-write-wan': plan1.uniqueBytes, 'archive-write-https-wan': plan1.uniqueBytes,
      }
      const workloads: WorkloadResult[] = WORKLOADS.filter((w) => want(w)).map((w) => ({...summarize(w, records.get(w)!, needed[w]), measured_at: machine.date}))
      // a run of some workloads keeps the others from the results it replaces, so runs of parts add up
      // (only results of the same platform: the same scale and unique bytes)
      const found = flags.quick || flags['no-merge'] ? undefined : await previousResults()
      const earlier = found?.scale === scale && found.platform?.uniqueBytes === plan1.uniqueBytes ? found : undefined
      for (const w of (earlier?.workloads ?? []).filter(isRelocation)) {
        if (want(w.name)) continue
        workloads.push({...w, measured_at: w.measured_at ?? earlier!.machine.date})
      }
      workloads.sort((a, b) => WORKLOADS.indexOf(a.name) - WORKLOADS.indexOf(b.name))
      const toolInfos = [...infos, ...(earlier?.tools ?? []).filter((t) => !infos.some((i) => i.id === t.id) && workloads.some((w) => w[`${t.id}_s`] !== undefined))]
      const checks: Report['checks'] = []
      for (const w of workloads) {
        for (const [tool, rs] of Object.entries(w.runs)) {
          const bad = rs.filter((r) => !r.ok)
          if (bad.length) checks.push({name: `${w.name}: ${tool} ran`, ok: false, detail: `${bad.length} of ${rs.length} runs failed: ${bad[0]!.reason?.split('\n')[0]}`})
        }
        const floor = w.floor_s
        if (floor !== undefined && w.name !== 'nothing-to-move') {
          const beat = tools.filter((t) => t !== 'floor' && (w[`${t}_s`] ?? Infinity) < floor)
          checks.push({name: `${w.name}: no tool beats the floor`, ok: beat.length === 0, detail: beat.length ? `${beat.join(', ')} faster than the floor's ${floor} s: the floor is wrong` : `floor ${floor} s`})
        }
      }
      const get = (n: WorkloadName) => workloads.find((w) => w.name === n)
      const cluster = clusterWorkloads(upgrade ?? earlier?.upgrade)
      const goal = (name: string, ok: boolean | undefined, detail: string) => ok !== undefined && checks.push({name, ok, detail})
      const r2r = get('registry-to-registry')
      goal('loopback: kpi at least 0.95 of the floor', r2r?.ratio_vs_floor !== undefined ? r2r.ratio_vs_floor >= 0.95 : undefined, `floor/kpi ${r2r?.ratio_vs_floor}`)
      goal('loopback: kpi ahead of every peer', r2r?.ratio_vs_best_peer !== undefined ? r2r.ratio_vs_best_peer > 1 : undefined, `best peer (${r2r?.best_peer})/kpi ${r2r?.ratio_vs_best_peer}`)
      const ggcrW = get('registry-to-registry-ggcr')
      goal('loopback into go-containerregistry\'s registry: kpi ahead of every peer', ggcrW?.ratio_vs_best_peer !== undefined ? ggcrW.ratio_vs_best_peer > 1 : undefined, `best peer (${ggcrW?.best_peer})/kpi ${ggcrW?.ratio_vs_best_peer}`)
      const httpsW = get('registry-to-registry-https')
      goal('loopback from an HTTPS source: kpi ahead of every peer', httpsW?.ratio_vs_best_peer !== undefined ? httpsW.ratio_vs_best_peer > 1 : undefined, `best peer (${httpsW?.best_peer})/kpi ${httpsW?.ratio_vs_best_peer}`)
      const twiceWan: Array<[WorkloadName, string]> = [['registry-to-registry-wan', 'WAN'], ['registry-to-registry-https-wan', 'WAN from an HTTPS source'], ['archive-write-wan', 'WAN archive write'], ['archive-write-https-wan', 'WAN archive write from an HTTPS source']]
      for (const [n, label] of twiceWan) {
        const w = get(n)
        goal(`${label}: kpi at least 2x the fastest peer`, w?.ratio_vs_best_peer !== undefined ? w.ratio_vs_best_peer >= 2 : undefined, `best peer (${w?.best_peer})/kpi ${w?.ratio_vs_best_peer}`)
      }
      for (const n of ['archive-write', 'archive-write-durable', 'archive-read'] as const) {
        const w = get(n)
        const r = w?.kpi_s && w.imgpkg_s ? w.imgpkg_s / w.kpi_s : undefined
        goal(`${n}: kpi at least 1.5x imgpkg`, r !== undefined ? r >= 1.5 : undefined, `imgpkg/kpi ${r?.toFixed(2)}`)
      }
      const patch = get('patch')
      const pm = patch?.bytes_moved.kpi
      goal('patch: kpi moves at most the changed bytes + 1%', pm !== undefined ? pm <= patch!.bytes_needed * 1.01 : undefined, `${pm} of ${patch?.bytes_needed} changed bytes`)
      const noop = get('nothing-to-move')
      goal('nothing to move: kpi at least as fast as the fastest peer', noop?.ratio_vs_best_peer !== undefined ? noop.ratio_vs_best_peer >= 1 : undefined, `best peer (${noop?.best_peer}) ${noop?.best_peer ? noop[`${noop.best_peer}_s`] : '-'} s, kpi ${noop?.kpi_s} s`)
      checks.push(...clusterChecks(cluster))
      const kpiRss = Math.max(0, ...[...workloads, ...cluster].map((w) => w.peak_rss_bytes.kpi ?? 0))
      goal('kpi peak RSS under 100 MiB', kpiRss ? kpiRss < 100 * MIB : undefined, fmtBytes(kpiRss) ?? '-')
      const r2rKpi = r2r?.runs.kpi?.find((r) => r.ok)
      if (r2rKpi) goal('kpi moved every unique byte once', r2rKpi.bytesMoved === r2r!.bytes_needed, `${r2rKpi.bytesMoved} of ${r2r!.bytes_needed}`)

      const doc: Report = {
        benchmark: 'kpi-vs-peers', machine, machineAtEnd: machineFacts(), scale, rounds,
        wan: {...wanProfile, perConnection: true},
        platform: {images: plan1.roots.length, manifests: plan1.manifests.length, blobs: plan1.blobs.size, uniqueBytes: plan1.uniqueBytes, changedBytes, changedBlobs: changed.length, largestBlob},
        tools: toolInfos, workloads: [...workloads, ...cluster], checks, upgrade: upgrade ?? (earlier?.upgrade), roundsDone, partialRound: partial, setupS: round3(setupS)!, totalS: round3((performance.now() - started) / 1000)!,
      }
      const md = markdown(doc)
      await mkdir(outDir, {recursive: true})
      const base = flags.quick ? 'quick' : 'latest'
      await writeFile(join(outDir, `${base}.json`), JSON.stringify(doc, null, 2) + '\n')
      await writeFile(join(outDir, `${base}.md`), md)
      if (!flags.quick && !flags['no-readme']) await updateReadme(md)
      if (roundsDone === rounds) process.stdout.write(flags.json ? JSON.stringify(doc, null, 2) + '\n' : md)
      // the reports within a round (a run cut short still reports) go unannounced
      if (!partial) say(`wrote ${join(outDir, `${base}.json`)} and ${base}.md in ${fmtMs(performance.now() - started)}`)
    }
    // Memory made ready (lib/prime.ts) for the runs that start without memory freed a moment
    // before: an archive read (its archive is still held; every other run starts just after the
    // run before has removed its registry or archive), and the first run of all.
    const primeBytes = plan1.uniqueBytes + (256 << 20)
    primeFirst = primeBytes
    // Warm-up rounds first: runs of each workload by one tool (the floor: the quickest), not
    // counted. The first runs after the platform push were 25-35% slower whichever tool came
    // first (the source registry's files and the page cache still settling), which only widened
    // the spreads. One warm-up round was not enough: in three full runs in a row the first
    // counted registry-to-registry run, always kpi's (first in round 1), was the slowest of its
    // rounds (8.77, 8.86 and 9.66 s against 7.5-8.2; the floor's warm-up run 8.0-9.3 against 6.8-7.5).
    for (let round = flags['no-warmup'] ? 0 : -WARMUP_ROUNDS; round < rounds; round++) {
      warming = round < 0
      const order = warming ? [tools.includes('floor') ? 'floor' as const : tools[0]!] : rotate(tools, round)
      say(warming ? `warm-up (not counted): ${order[0]}` : `round ${round + 1} of ${rounds}: ${order.join(', ')}`)
      if (want('registry-to-registry', 'nothing-to-move', 'patch')) {
        for (const t of order) {
          const d = await freshDest(workDir, ca, `r${round}-${t}-loopback`)
          try {
            const dir = join(workDir, 'runs', `r${round}-${t}-loopback`)
            const logs = {source: pub, dest: d.registry}
            const fp = join(dir, 'floor-v1.json')
            const j1 = await job(platform.v1, pub.host, dir, fp)
            await writeFloorPlan(fp, plan1, {source: {url: `http://${pub.host}`}, dest: destEndpoint(d)})
            const r1 = await observed(round, await copyStep(t, paths, j1, d), logs, sizes)
            record('registry-to-registry', t, r1)
            if (!r1.ok) continue
            if (want('nothing-to-move')) {
              const fpHead = join(dir, 'floor-head.json')
              await writeFloorPlan(fpHead, plan1, {source: {url: `http://${pub.host}`}, dest: destEndpoint(d)})
              const step = t === 'floor' ? {kind: 'one' as const, spec: {label: 'floor head', cmd: paths.floor!, args: ['head', '-plan', fpHead]}} : await copyStep(t, paths, j1, d)
              record('nothing-to-move', t, await observed(round, step, logs, sizes))
            }
            if (want('patch')) {
              const fp2 = join(dir, 'floor-v2.json')
              await writeFloorPlan(fp2, plan2, {source: {url: `http://${pub.host}`}, dest: destEndpoint(d), have})
              record('patch', t, await observed(round, await copyStep(t, paths, await job(platform.v2, pub.host, dir, fp2), d), logs, sizes))
            }
          } finally {
            await d.dispose()
          }
        }
      }
      await report(round, undefined, true)
      if (want('registry-to-registry-wan') && wan) {
        for (const t of order) {
          const d = await freshDest(workDir, ca, `r${round}-${t}-wan`)
          try {
            const dir = join(workDir, 'runs', `r${round}-${t}-wan`)
            const j = await wanJob(wan, dir, join(dir, 'floor-wan.json'), destEndpoint(d))
            record('registry-to-registry-wan', t, await observed(round, await copyStep(t, paths, j, d), {source: pub, dest: d.registry}, sizes))
          } finally {
            await d.dispose()
          }
        }
      }
      await report(round, undefined, true)
      if (want('registry-to-registry-ggcr')) {
        for (const t of order) {
          const d = await freshGgcrDest(workDir, ca, `r${round}-${t}-ggcr`)
          try {
            const dir = join(workDir, 'runs', `r${round}-${t}-ggcr`)
            const fp = join(dir, 'floor-ggcr.json')
            const j = await job(platform.v1, pub.host, dir, fp)
            // its blobs serve every repository and it declines mounts (202): the floor uploads each once
            await writeFloorPlan(fp, plan1, {source: {url: `http://${pub.host}`}, dest: {url: `https://${d.host}`, caFile: d.caFile}, mounts: false})
            record('registry-to-registry-ggcr', t, await observed(round, await copyStep(t, paths, j, d), {source: pub, dest: d.registry}, sizes))
          } finally {
            await d.dispose()
          }
        }
        await report(round, undefined, true)
      }
      if (want('registry-to-registry-https') && pubTls) {
        for (const t of order) {
          const d = await freshDest(workDir, ca, `r${round}-${t}-https`)
          try {
            const dir = join(workDir, 'runs', `r${round}-${t}-https`)
            const fp = join(dir, 'floor-https.json')
            const j = {...await job(platform.v1, pubTls.host, dir, fp), srcCaFile: ca.cert}
            await writeFloorPlan(fp, plan1, {source: {url: `https://${pubTls.host}`, caFile: ca.cert}, dest: destEndpoint(d)})
            record('registry-to-registry-https', t, await observed(round, await copyStep(t, paths, j, d), {source: pubTls, dest: d.registry}, sizes))
          } finally {
            await d.dispose()
          }
        }
        await report(round, undefined, true)
      }
      if (want('registry-to-registry-https-wan') && wanTls && pubTls) {
        for (const t of order) {
          const d = await freshDest(workDir, ca, `r${round}-${t}-https-wan`)
          try {
            const dir = join(workDir, 'runs', `r${round}-${t}-https-wan`)
            const j = await wanJob(wanTls, dir, join(dir, 'floor-https-wan.json'), destEndpoint(d), ca.cert)
            record('registry-to-registry-https-wan', t, await observed(round, await copyStep(t, paths, j, d), {source: pubTls, dest: d.registry}, sizes))
          } finally {
            await d.dispose()
          }
        }
        await report(round, undefined, true)
      }
      if (want('archive-write', 'archive-read')) {
        for (const t of order) {
          const dir = join(workDir, 'runs', `r${round}-${t}-archive`)
          const fp = join(dir, 'floor-archive.json')
          const j = await job(platform.v1, pub.host, dir, fp)
          await writeFloorPlan(fp, plan1, {source: {url: `http://${pub.host}`}, dest: {url: 'https://unused'}})
          const w = await toArchiveStep(t, paths, j)
          if (!w) continue
          try {
            // every tool's archive, then the sync that puts what it left in the page cache on
            // disk: kpi flushes as it writes and names the archive complete only once it is
            // durable; the peers return with it in the page cache
            const rw = await observed(round, w, {source: pub}, sizes, 0, true)
            record('archive-write', t, rw)
            if (rw.ok && t !== 'floor') record('archive-write-durable', t, {...rw, wallS: rw.wallS + (rw.syncAfterS ?? 0)})
            // the floor to the disk goes the way kpi does, around the page cache (O_DIRECT), synced
            // before it returns: through the page cache and a sync after, it was beaten by kpi
            // (3.47 s against 3.37). Its archive is written again for it, then the one read below.
            if (rw.ok && t === 'floor') {
              const wd = await toArchiveStep(t, paths, {...j, floorArgs: [...(j.floorArgs ?? []), '-direct']})
              const rd = wd && await observed(round, wd, {source: pub}, sizes, 0, true)
              if (rd) record('archive-write-durable', t, {...rd, wallS: rd.wallS + (rd.syncAfterS ?? 0)})
            }
            if (!rw.ok || !want('archive-read')) continue
            const d = await freshDest(workDir, ca, `r${round}-${t}-archive`)
            try {
              await writeFloorPlan(fp, plan1, {source: {url: `http://${pub.host}`}, dest: destEndpoint(d)})
              const r = await fromArchiveStep(t, paths, j, d)
              // from the disk, as an archive that crossed the gap on a drive: every tool alike
              await evictFromCache(archivePath(t, j))
              if (r) record('archive-read', t, await observed(round, r, {source: pub, dest: d.registry}, sizes, primeBytes))
            } finally {
              await d.dispose()
            }
          } finally {
            removeLater(dir)
          }
        }
      }
      /** every tool's archive of v1 written through `proxy` (the WAN profile), from `source` */
      const wanArchives = async (name: 'archive-write-wan' | 'archive-write-https-wan', proxy: WanProxy, source: Registry, caFile?: string): Promise<void> => {
        await report(round, undefined, true)
        for (const t of order) {
          const dir = join(workDir, 'runs', `r${round}-${t}-${name}`)
          const j = await wanJob(proxy, dir, join(dir, `floor-${name}.json`), {url: 'https://unused'}, caFile)
          const w = await toArchiveStep(t, paths, j)
          if (!w) continue
          try {
            record(name, t, await observed(round, w, {source}, sizes, 0, true))
          } finally {
            removeLater(dir)
          }
        }
      }
      if (want('archive-write-wan') && wan) await wanArchives('archive-write-wan', wan, pub)
      if (want('archive-write-https-wan') && wanTls && pubTls) await wanArchives('archive-write-https-wan', wanTls, pubTls, ca.cert)
      if (round < rounds - 1) await report(round + 1)
    }
    warming = false

    await report(rounds, await runUpgradeBench())
    return 0
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await cleanup()
  }
}

/** The results this run's latest.json replaces, read once (undefined when there are none). */
let previous: Promise<Report | undefined> | undefined
function previousResults(): Promise<Report | undefined> {
  previous ??= readFile(join(outDir, 'latest.json'), 'utf8').then((t) => JSON.parse(t) as Report, () => undefined)
  return previous
}

const BEGIN = '<!-- bench:begin (npm run bench writes this table) -->'
const END = '<!-- bench:end -->'

async function updateReadme(md: string): Promise<void> {
  const file = join(REPO_ROOT, 'README.md')
  const text = await readFile(file, 'utf8')
  const i = text.indexOf(BEGIN)
  const j = text.indexOf(END)
  if (i === -1 || j < i) {
    say(`README.md has no ${BEGIN} ... ${END} section: table not written there`)
    return
  }
  await writeFile(file, `${text.slice(0, i + BEGIN.length)}\n${md}${text.slice(j)}`)
}

main().then((code) => process.exit(code), (e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exit(1)
})
