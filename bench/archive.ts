/**
 * Air-gap archive benchmark on loopback: the sample platform (scaled) in a plain "public"
 * registry and an htpasswd+TLS "air-gapped" registry (the sandbox), then
 *   kpi to-tar v1, tar verify, from-tar v1 into the air gap, delta v2 --since v1, from-tar delta,
 * and skopeo writing the same images as oci-archives (one per image: skopeo has no multi-image
 * archive) for comparison. Prints a table, or JSON with --json.
 *
 *   npx tsx bench/archive.ts [--scale 64] [--json] [--keep DIR]
 */
import {execFile} from 'node:child_process'
import {mkdtemp, readFile, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {relocateFromArchive, relocateToArchive} from '../src/archive/actions.js'
import {verifyArchive} from '../src/archive/verify.js'
import {bundleImages, loadBundle} from '../src/bundle/index.js'
import {createRegistryClient} from '../src/oci/client.js'
import {parseReference} from '../src/oci/reference.js'
import {startSandbox} from '../src/sandbox/sandbox.js'

const run = promisify(execFile)

interface Row {
  step: string
  seconds: number
  bytes: number
  mbPerSecond: number
  rssMiB: number
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? undefined : process.argv[i + 1]
}

async function main(): Promise<void> {
  const scale = Number(arg('scale') ?? 64)
  const json = process.argv.includes('--json')
  const dir = arg('keep') ?? (await mkdtemp(join(tmpdir(), 'kpi-bench-archive-')))
  const rows: Row[] = []
  let peak = 0
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50)
  const measure = async (step: string, bytes: () => Promise<number> | number, f: () => Promise<unknown>) => {
    peak = process.memoryUsage().rss
    const t = process.hrtime.bigint()
    await f()
    const seconds = Number(process.hrtime.bigint() - t) / 1e9
    const b = await bytes()
    rows.push({step, seconds, bytes: b, mbPerSecond: b / 1e6 / seconds, rssMiB: Math.max(peak, process.memoryUsage().rss) / 2 ** 20})
  }

  const sb = await startSandbox({runDir: join(dir, 'sandbox'), scale})
  const client = createRegistryClient({plainHttp: (r) => r === sb.public.host, caCerts: [await readFile(sb.caFile, 'utf8')],
    credentials: async (r) => (r === sb.airgap.host ? {username: sb.airgap.username, password: sb.airgap.password, source: 'bench'} : undefined)})
  try {
    const v1 = await loadBundle(sb.bundles.v1!)
    const v2 = await loadBundle(sb.bundles.v2!)
    const full = join(dir, 'v1.tar')
    const delta = join(dir, 'v2-delta.tar')
    const size = async (f: string) => (await stat(f)).size
    await measure('kpi to-tar v1', () => size(full), () => relocateToArchive({bundle: v1, file: full, client}))
    await measure('kpi tar verify v1', () => size(full), async () => {
      const v = await verifyArchive(full)
      if (!v.ok) throw new Error('verify failed')
    })
    await measure('kpi from-tar v1 (TLS+auth)', () => size(full), () => relocateFromArchive({file: full, toRepo: sb.airgapPrefix, client}))
    await measure('kpi to-tar v2 --since v1', () => size(delta), () => relocateToArchive({bundle: v2, file: delta, client, since: v1}))
    await measure('kpi from-tar delta (TLS+auth)', () => size(delta), () => relocateFromArchive({file: delta, toRepo: sb.airgapPrefix, client}))
    let skopeoBytes = 0
    await measure('skopeo copy --all to oci-archive, per image', () => skopeoBytes, async () => {
      for (const [i, img] of bundleImages(v1.bundle).entries()) {
        const p = parseReference(img.ref)
        const out = join(dir, `skopeo-${i}.tar`)
        await run('skopeo', ['copy', '--all', '--quiet', '--src-tls-verify=false', `docker://${p.registry}/${p.repository}@${p.digest}`, `oci-archive:${out}`])
        skopeoBytes += await size(out)
      }
    })
  } finally {
    clearInterval(sampler)
    await client.close()
    await sb.stop()
    if (!arg('keep')) await rm(dir, {recursive: true, force: true})
  }

  if (json) {
    process.stdout.write(JSON.stringify({scale, rows}, null, 2) + '\n')
    return
  }
  process.stdout.write(`archive benchmark, sample scale ${scale}\n`)
  for (const r of rows) {
    process.stdout.write(`${r.step.padEnd(46)} ${r.seconds.toFixed(2).padStart(7)} s ${(r.bytes / 2 ** 20).toFixed(1).padStart(8)} MiB ${r.mbPerSecond.toFixed(1).padStart(7)} MB/s  rss ${r.rssMiB.toFixed(0)} MiB\n`)
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`)
  process.exitCode = 1
})
