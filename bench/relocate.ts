/**
 * Relocation benchmark: the sample platform (over 1 GiB of unique blobs at the default scale)
 * copied registry to registry, from the sandbox's public registry (plain HTTP) to its air-gapped
 * one (htpasswd + TLS from the sandbox CA), by kpi and by its peers in the same run, each into a
 * fresh repository prefix, then again into the same prefix (everything already there). Then an
 * image with one 1 GiB layer, relocated by kpi, whose peak RSS must stay flat.
 *
 *   npx tsx bench/relocate.ts [--scale N] [--quick] [--json] [--keep] [--tools kpi,crane,skopeo]
 *
 * Exit 1 when a tool fails, when kpi's second run moves any byte, or when kpi's peak RSS for the
 * big layer is over the limit. See bench/README.md for what each number means.
 */
import {beginRun} from './lib/run.js'
import {copyFile, mkdir, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {parseArgs} from 'node:util'
import {openOciLayout} from '../src/archive/layout.js'
import {bundleImages, mapBundleImages} from '../src/bundle/images.js'
import type {Bundle} from '../src/bundle/types.js'
import {generateImage, writeBundleDir} from '../src/imagegen/index.js'
import {createRegistryClient} from '../src/oci/client.js'
import {parseReference} from '../src/oci/reference.js'
import type {RelocationSummary} from '../src/relocate/execute.js'
import {planImages} from '../src/relocate/plan.js'
import {fromSource, registrySource, toRegistry} from '../src/relocate/registry-endpoints.js'
import {bundleRoots, relocate} from '../src/relocate/relocate.js'
import type {Sandbox} from '../src/sandbox/sandbox.js'
import {fmtBytes, fmtMs, fmtRate, fmtRatio, renderTable, type Cell} from './lib/format.js'
import {fmtLoad, formatMachineFacts, machineFacts, type MachineFacts} from './lib/machine.js'
import {failureText, measure, measureLoop, type CommandSpec, type Measured} from './lib/measure.js'
import {logMark, readLog, requestStats, type RequestStats} from './lib/registry-log.js'
import {findKpi, findPeer, type Tool} from './lib/tools.js'

const MIB = 1 << 20
const GIB = 1 << 30
/** kpi's peak RSS while relocating one huge layer must stay under this: blobs are streamed (issue 13's goal, whatever the bundle size) */
const RSS_LIMIT = 100 * MIB

const {values: flags} = parseArgs({
  options: {
    scale: {type: 'string'},
    quick: {type: 'boolean', default: false},
    'layer-mib': {type: 'string'},
    tools: {type: 'string', default: 'kpi,crane,skopeo'},
    json: {type: 'boolean', default: false},
    keep: {type: 'boolean', default: false},
    'no-memory': {type: 'boolean', default: false},
    'kpi-bin': {type: 'string'},
    help: {type: 'boolean', short: 'h', default: false},
  },
  strict: true,
})

if (flags.help) {
  process.stdout.write(`npx tsx bench/relocate.ts [options]
  --scale N        sample scale (default 256: about 1.07 GiB of unique blobs)
  --quick          smoke run: scale 8 and a 128 MiB layer for the memory check
  --layer-mib N    size of the one-layer image of the memory check (default 1024)
  --tools LIST     which of kpi,crane,skopeo to run (default all; kpi is the baseline)
  --no-memory      skip the one-layer memory check
  --kpi-bin FILE   measure another kpi build's bin/run.js (default: this checkout's)
  --json           print one JSON document instead of tables
  --keep           keep the run directory (registries' storage and logs)
`)
  process.exit(0)
}

const positiveNumber = (name: string, v: string): number => {
  const n = Number(v)
  if (!(n > 0 && Number.isFinite(n))) {
    process.stderr.write(`--${name} "${v}" is not a positive number\n`)
    process.exit(2)
  }
  return n
}
const scale = flags.scale ? positiveNumber('scale', flags.scale) : flags.quick ? 8 : 256
const layerBytes = Math.round((flags['layer-mib'] ? positiveNumber('layer-mib', flags['layer-mib']) : flags.quick ? 128 : 1024) * MIB)
const wanted = new Set(flags.tools.split(',').map((s) => s.trim()).filter(Boolean))
for (const t of wanted) {
  if (!['kpi', 'crane', 'skopeo'].includes(t)) {
    process.stderr.write(`--tools: unknown tool "${t}"; use kpi, crane, skopeo\n`)
    process.exit(2)
  }
}

const say = (line: string): void => void process.stderr.write(`[bench] ${line}\n`)

/** One run of one tool: a process (kpi) or a loop of processes (a peer, image by image). */
interface RunResult {
  wallMs: number
  peakRssBytes?: number
  processes: number
  /** what crossed the wire into the destination: kpi's own summary, peers from the registry log */
  bytesMoved: number
  bytesMovedFrom: 'kpi summary' | 'registry log'
  /** blob bytes the destination's log shows arriving (the same measure for every tool) */
  logBytesReceived: number
  dest: RequestStats
  source: RequestStats
  load: {start: number; end: number}
  kpiSummary?: RelocationSummary
}

interface ToolResult {
  tool: string
  version?: string
  status: 'ok' | 'failed' | 'skipped'
  reason?: string
  command?: string
  first?: RunResult
  second?: RunResult
}

interface MemoryResult {
  layerBytes: number
  wallMs: number
  peakRssBytes?: number
  limitBytes: number
  ok: boolean
  summary?: RelocationSummary
  reason?: string
}

/** Measures `run` and reads both registries' logs for what happened meanwhile. */
async function observed(sb: Sandbox, sizes: Map<string, number>, run: () => Promise<{wallMs: number; peakRssBytes?: number; processes: number; load: {start: number; end: number}; kpiSummary?: RelocationSummary}>): Promise<RunResult> {
  const destMark = await logMark(sb.airgap.logFile)
  const srcMark = await logMark(sb.public.logFile)
  const r = await run()
  // distribution writes the "response completed" line just after the response: give it a moment
  await new Promise((res) => setTimeout(res, 200))
  const dest = requestStats(await readLog(sb.airgap.logFile, destMark), sizes)
  const source = requestStats(await readLog(sb.public.logFile, srcMark), sizes)
  return {
    ...r,
    bytesMoved: r.kpiSummary ? r.kpiSummary.bytesMoved : dest.bytesReceived,
    bytesMovedFrom: r.kpiSummary ? 'kpi summary' : 'registry log',
    logBytesReceived: dest.bytesReceived,
    dest,
    source,
  }
}

function kpiSummaryOf(m: Measured): RelocationSummary {
  // with --json, stdout holds the result object on its own line (events go to stderr)
  for (const line of m.stdout.split('\n').reverse()) {
    if (!line.startsWith('{')) continue
    const o = JSON.parse(line) as {ok?: boolean; summary?: RelocationSummary}
    if (o.ok && o.summary) return o.summary
  }
  throw new Error(`${m.label}: no JSON summary in its output:\n${m.stdout.slice(-2000)}`)
}

function kpiRelocate(kpi: Tool, sb: Sandbox, bundleDir: string, toRepo: string, lock: string): CommandSpec {
  return {
    label: `kpi relocate -b ${bundleDir} --to-repo ${toRepo}`,
    cmd: process.execPath,
    args: [kpi.path!, 'relocate', '-b', bundleDir, '--to-repo', toRepo, '--lock-output', lock, '--ca-cert', sb.caFile, '--json'],
    env: {...sb.env, NO_COLOR: '1', CI: 'true'},
  }
}

/** The bundle's images, each once: what a user's loop over a peer tool would copy. */
function loopImages(bundle: Bundle): Array<{src: string; repository: string; tag: string}> {
  const seen = new Map<string, {src: string; repository: string; tag: string}>()
  for (const {ref} of bundleImages(bundle)) {
    const r = parseReference(ref)
    const src = `${r.registry}/${r.repository}@${r.digest}`
    if (!seen.has(src)) seen.set(src, {src, repository: r.repository, tag: r.tag ?? 'bench'})
  }
  return [...seen.values()]
}

async function peerCommands(tool: Tool, sb: Sandbox, bundle: Bundle, prefix: string, workDir: string): Promise<CommandSpec[]> {
  const dst = (repository: string, tag: string) => `${sb.airgap.host}/${prefix}/${repository}:${tag}`
  if (tool.name === 'crane') {
    // No --insecure: crane (go-containerregistry) already falls back to plain HTTP for loopback
    // registries, and --insecure would also stop it verifying the air-gapped registry's
    // certificate, which kpi and skopeo verify. SSL_CERT_FILE is all the trust it has.
    const env = {DOCKER_CONFIG: sb.dockerConfigDir, SSL_CERT_FILE: sb.caFile}
    return loopImages(bundle).map((i) => ({label: `crane copy ${i.src}`, cmd: tool.path!, args: ['copy', i.src, dst(i.repository, i.tag)], env}))
  }
  // skopeo reads the CA as <dir>/ca.crt and takes a docker config as its auth file
  const certDir = join(workDir, 'skopeo-certs')
  await mkdir(certDir, {recursive: true})
  await copyFile(sb.caFile, join(certDir, 'ca.crt'))
  return loopImages(bundle).map((i) => ({
    label: `skopeo copy ${i.src}`,
    cmd: tool.path!,
    args: [
      'copy', '--all', '--preserve-digests', '--src-tls-verify=false', '--dest-cert-dir', certDir,
      '--dest-authfile', join(sb.dockerConfigDir, 'config.json'), `docker://${i.src}`, `docker://${dst(i.repository, i.tag)}`,
    ],
  }))
}

async function runTool(tool: Tool, sb: Sandbox, bundle: Bundle, bundleDir: string, sizes: Map<string, number>, workDir: string): Promise<ToolResult> {
  const prefix = `bench-${tool.name}`
  const base: ToolResult = {tool: tool.name, version: tool.version, status: 'ok'}
  const runOnce = async (which: string): Promise<RunResult | string> => {
    let failure: string | undefined
    const r = await observed(sb, sizes, async () => {
      if (tool.name === 'kpi') {
        const m = await measure(kpiRelocate(tool, sb, bundleDir, `${sb.airgap.host}/${prefix}`, join(workDir, `kpi-lock-${which}.yaml`)))
        if (m.code !== 0) failure = failureText(m)
        return {wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, processes: 1, load: m.load, kpiSummary: m.code === 0 ? kpiSummaryOf(m) : undefined}
      }
      const loop = await measureLoop(await peerCommands(tool, sb, bundle, prefix, workDir))
      if (loop.failures.length) failure = failureText(loop.failures[0]!)
      return {wallMs: loop.wallMs, peakRssBytes: loop.peakRssBytes, processes: loop.runs.length, load: loop.load}
    })
    return failure ?? r
  }
  const example = tool.name === 'kpi'
    ? kpiRelocate(tool, sb, bundleDir, `${sb.airgap.host}/${prefix}`, join(workDir, 'kpi-lock-first.yaml'))
    : (await peerCommands(tool, sb, bundle, prefix, workDir))[0]!
  base.command = [tool.name === 'kpi' ? 'node' : example.cmd, ...example.args].join(' ') + (tool.name === 'kpi' ? '' : '  (one per image)')
  say(`${tool.name}: first run into ${sb.airgap.host}/${prefix}`)
  const first = await runOnce('first')
  if (typeof first === 'string') return {...base, status: 'failed', reason: first}
  say(`${tool.name}: ${fmtMs(first.wallMs)}, ${fmtBytes(first.bytesMoved)} moved, peak RSS ${fmtBytes(first.peakRssBytes)}, load ${fmtLoad([first.load.start, first.load.end])}`)
  say(`${tool.name}: second run into the same prefix`)
  const second = await runOnce('second')
  if (typeof second === 'string') return {...base, status: 'failed', reason: second, first}
  say(`${tool.name}: ${fmtMs(second.wallMs)}, ${fmtBytes(second.bytesMoved)} moved`)
  return {...base, first, second}
}

/** An image with one layer of `size` bytes in the public registry, and a bundle whose every image is it. */
async function hugeImageBundle(sb: Sandbox, size: number, workDir: string): Promise<{dir: string; bundle: Bundle}> {
  const layoutDir = join(workDir, 'huge-layout')
  // 64 MiB files: the tar's entry count does not matter here, the layer's size does
  const img = await generateImage(layoutDir, {layers: [{seed: `kpi-bench-one-layer-${size}`, size, fileSize: 64 * MIB}]})
  const ref = `${sb.public.host}/bench/one-layer:${Math.round(size / MIB)}mib@${img.descriptor.digest}`
  const bundle = mapBundleImages(sb.bundle.v1!, () => ref)
  bundle.metadata = {name: 'bench-one-layer', version: bundle.metadata.version}
  const layout = await openOciLayout(layoutDir)
  const client = createRegistryClient({plainHttp: (r) => r === sb.public.host})
  try {
    await relocate({from: fromSource(layout.source, bundle), to: toRegistry(client, {registry: sb.public.host, prefix: ''})})
  } finally {
    await client.close()
  }
  // the layout is not needed any more: the registry holds the image now
  await rm(layoutDir, {recursive: true, force: true})
  const dir = await writeBundleDir(bundle, join(workDir, 'bundles', 'one-layer'))
  return {dir, bundle}
}

async function memoryCheck(kpi: Tool, sb: Sandbox, workDir: string): Promise<MemoryResult> {
  say(`memory: generating an image with one ${fmtBytes(layerBytes)} layer and pushing it to the public registry`)
  const {dir} = await hugeImageBundle(sb, layerBytes, workDir)
  say('memory: kpi relocate of the one-layer image')
  const m = await measure(kpiRelocate(kpi, sb, dir, `${sb.airgap.host}/bench-memory`, join(workDir, 'kpi-lock-memory.yaml')))
  if (m.code !== 0) return {layerBytes, wallMs: m.wallMs, limitBytes: RSS_LIMIT, ok: false, reason: failureText(m)}
  const summary = kpiSummaryOf(m)
  const ok = m.peakRssBytes !== undefined && m.peakRssBytes < RSS_LIMIT && summary.bytesMoved >= layerBytes
  return {
    layerBytes, wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, limitBytes: RSS_LIMIT, ok, summary,
    reason: ok ? undefined : m.peakRssBytes === undefined ? 'no peak RSS reported' : m.peakRssBytes >= RSS_LIMIT
      ? `peak RSS ${fmtBytes(m.peakRssBytes)} is not under ${fmtBytes(RSS_LIMIT)}` : `moved only ${fmtBytes(summary.bytesMoved)}`,
  }
}

interface Report {
  benchmark: 'relocate'
  machine: MachineFacts
  machineAtEnd: MachineFacts
  scale: number
  bundle: {images: number; manifests: number; blobs: number; uniqueBytes: number}
  setupMs: number
  tools: ToolResult[]
  memory?: MemoryResult
  checks: Array<{name: string; ok: boolean; detail: string}>
  ok: boolean
}

function printReport(r: Report): void {
  const out: string[] = []
  out.push(`Relocation benchmark, registry to registry (public, plain HTTP -> air-gapped, htpasswd + TLS)`)
  out.push(formatMachineFacts(r.machine))
  out.push(`bundle:  sample v1 at scale ${r.scale}: ${r.bundle.images} images, ${r.bundle.manifests} manifests, ${r.bundle.blobs} unique blobs, ${fmtBytes(r.bundle.uniqueBytes)} (${r.bundle.uniqueBytes} bytes)`)
  out.push(`setup:   ${fmtMs(r.setupMs)} (registries, sample generation, push to the public registry)`)
  out.push('')
  const kpi = r.tools.find((t) => t.tool === 'kpi' && t.status === 'ok')
  const rows: Cell[][] = []
  for (const t of r.tools) {
    const name = t.version ? `${t.tool} ${t.version}` : t.tool
    if (t.status === 'skipped') {
      rows.push([name, 'skipped', undefined, undefined, undefined, undefined, undefined, undefined, undefined])
      continue
    }
    if (t.status === 'failed' && !t.first) {
      rows.push([name, 'FAILED', undefined, undefined, undefined, undefined, undefined, undefined, undefined])
      continue
    }
    for (const [which, run] of [['first', t.first], ['again', t.second]] as const) {
      if (!run) {
        rows.push([name, `${which}: FAILED`, undefined, undefined, undefined, undefined, undefined, undefined, undefined])
        continue
      }
      const base = which === 'first' ? kpi?.first : kpi?.second
      rows.push([
        name, which, fmtMs(run.wallMs),
        which === 'first' ? fmtRate(r.bundle.uniqueBytes, run.wallMs) : undefined,
        fmtBytes(run.peakRssBytes), fmtBytes(run.bytesMoved),
        `${run.dest.total}${run.dest.unauthorized ? ` (${run.dest.unauthorized} 401)` : ''}`,
        fmtBytes(run.source.blobBytesServed),
        t.tool === 'kpi' ? '1.00x' : fmtRatio(run.wallMs, base?.wallMs),
      ])
    }
  }
  out.push(renderTable(
    ['tool', 'run', 'wall time', 'MiB/s', 'peak RSS', 'bytes moved', 'dest requests', 'read from source', {title: 'time vs kpi', align: 'right'}],
    rows,
  ))
  out.push('')
  out.push('MiB/s: unique bytes of the bundle / wall time. bytes moved: kpi from its summary, peers from the')
  out.push('destination log (completed blob uploads x blob size). Peers copy image by image in a loop; their peak')
  out.push('RSS is the largest of the loop\'s processes. "again": the same command into the same prefix.')
  if (kpi?.first?.kpiSummary && kpi.second?.kpiSummary) {
    out.push(`kpi's own copy phase (summary durationMs): first ${fmtMs(kpi.first.kpiSummary.durationMs)}, again ${fmtMs(kpi.second.kpiSummary.durationMs)};`
      + ' the rest of its wall time is process start, planning and exit.')
  }
  for (const t of r.tools) {
    if (t.status === 'skipped') out.push(`skipped ${t.tool}: ${t.reason}`)
    if (t.status === 'failed') out.push(`FAILED ${t.tool}: ${t.reason}`)
  }
  out.push('')
  out.push('Requests at the destination (first run): method counts, blob uploads, mounts')
  const reqRows: Cell[][] = []
  for (const t of r.tools) {
    const run = t.first
    if (!run) continue
    const m = run.dest.byMethod
    reqRows.push([t.tool, run.processes, run.dest.total, run.dest.unauthorized, m.HEAD ?? 0, m.GET ?? 0, m.POST ?? 0, m.PATCH ?? 0, m.PUT ?? 0,
      run.dest.uploadsCompleted, run.dest.mounts.mounted, run.dest.mounts.declined, run.source.total, run.source.blobGets])
  }
  out.push(renderTable(['tool', 'processes', 'total', '401', 'HEAD', 'GET', 'POST', 'PATCH', 'PUT', 'uploads', 'mounted', 'mount declined', 'source reqs', 'source blob GETs'], reqRows))
  if (r.memory) {
    out.push('')
    const m = r.memory
    out.push(`Memory: kpi relocating an image with one ${fmtBytes(m.layerBytes)} layer`)
    out.push(`  peak RSS ${fmtBytes(m.peakRssBytes)} (limit ${fmtBytes(m.limitBytes)}), ${fmtMs(m.wallMs)}, ${fmtRate(m.summary?.bytesMoved, m.wallMs) ?? '-'}: ${m.ok ? 'ok' : `FAILED: ${m.reason}`}`)
  }
  out.push('')
  out.push(`load at the end: ${fmtLoad(r.machineAtEnd.loadavg)}`)
  for (const c of r.checks) out.push(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`)
  process.stdout.write(out.join('\n') + '\n')
}

async function main(): Promise<number> {
  const machine = machineFacts()
  const kpi: Tool = flags['kpi-bin'] ? {name: 'kpi', path: flags['kpi-bin'], version: 'from --kpi-bin'} : await findKpi()
  if ('note' in kpi && kpi.note) say(`warning: ${kpi.note}`)
  const peers = await Promise.all((['crane', 'skopeo', 'imgpkg', 'kapp'] as const).map(findPeer))
  const run = await beginRun('relocate', {keep: flags.keep, say})
  const workDir = run.workDir
  say(`run directory ${workDir}; ${formatMachineFacts(machine).split('\n').slice(1).join('; ')}`)
  const step = (): void => run.checkInterrupted()
  try {
    say(`starting the sandbox and pushing the sample at scale ${scale}`)
    const setupStart = performance.now()
    const sb = await run.startSandbox({samples: ['v1'], scale})
    const setupMs = performance.now() - setupStart
    const bundle = sb.bundle.v1!
    const bundleDir = sb.bundles.v1!

    // the plan gives the unique bytes and every blob's size, to turn logged uploads into bytes
    const client = createRegistryClient({plainHttp: (r) => r === sb!.public.host})
    const plan = await planImages(registrySource(client), bundleRoots(bundle, {registry: sb.public.host, prefix: ''})).finally(() => client.close())
    const sizes = new Map([...plan.blobs.values()].map((b) => [b.digest, b.size]))
    say(`bundle: ${plan.roots.length} images, ${plan.blobs.size} unique blobs, ${fmtBytes(plan.uniqueBytes)}; setup took ${fmtMs(setupMs)}`)

    const tools: ToolResult[] = []
    const candidates: Tool[] = [kpi, ...peers.filter((p) => p.name === 'crane' || p.name === 'skopeo')]
    for (const t of candidates) {
      if (!wanted.has(t.name)) continue
      step()
      if (t.skipped) {
        tools.push({tool: t.name, status: 'skipped', reason: t.skipped})
        continue
      }
      tools.push(await runTool(t, sb, bundle, bundleDir, sizes, workDir))
    }
    for (const p of peers) {
      if (p.name === 'imgpkg' || p.name === 'kapp') {
        tools.push({tool: p.name, version: p.version, status: 'skipped', reason: p.skipped ?? 'not part of this benchmark yet'})
      }
    }

    step()
    const memory = flags['no-memory'] ? undefined : await memoryCheck(kpi, sb, workDir)

    const checks: Report['checks'] = []
    for (const t of tools) {
      if (t.status === 'failed') checks.push({name: `${t.tool} ran`, ok: false, detail: t.reason ?? 'failed'})
    }
    const k = tools.find((t) => t.tool === 'kpi')
    if (k?.first) {
      checks.push({name: 'kpi moved every unique byte once', ok: k.first.bytesMoved === plan.uniqueBytes,
        detail: `${k.first.bytesMoved} of ${plan.uniqueBytes} bytes`})
      checks.push({name: 'kpi summary agrees with the registry log', ok: k.first.bytesMoved === k.first.logBytesReceived,
        detail: `summary ${k.first.bytesMoved}, log ${k.first.logBytesReceived}${k.first.dest.unknownUploads.length ? `, ${k.first.dest.unknownUploads.length} unknown uploads` : ''}`})
    }
    if (k?.second) {
      checks.push({name: 'kpi second run moves nothing', ok: k.second.bytesMoved === 0 && k.second.logBytesReceived === 0,
        detail: `summary ${k.second.bytesMoved} bytes, log ${k.second.logBytesReceived} bytes`})
    }
    if (plan.uniqueBytes < GIB && scale >= 256) {
      checks.push({name: 'bundle is at least 1 GiB', ok: false, detail: `${fmtBytes(plan.uniqueBytes)}: the sample spec changed; raise --scale`})
    }
    if (memory) checks.push({name: `kpi peak RSS under ${fmtBytes(RSS_LIMIT)} for one ${fmtBytes(layerBytes)} layer`, ok: memory.ok, detail: memory.reason ?? fmtBytes(memory.peakRssBytes) ?? '-'})

    const report: Report = {
      benchmark: 'relocate',
      machine,
      machineAtEnd: machineFacts(),
      scale,
      bundle: {images: plan.roots.length, manifests: plan.manifests.length, blobs: plan.blobs.size, uniqueBytes: plan.uniqueBytes},
      setupMs,
      tools,
      memory,
      checks,
      ok: checks.every((c) => c.ok),
    }
    if (flags.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n')
    else printReport(report)
    if (flags.keep) say(`kept ${workDir}`)
    return report.ok ? 0 : 1
  } finally {
    await run.finish()
  }
}

main().then((code) => process.exit(code), (e: unknown) => {
  process.stderr.write(`bench/relocate: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
