/**
 * go-containerregistry's registry (pkg/registry, built by scripts/tools.sh as `ggcr-registry`) on
 * loopback: a second real registry implementation for tests, and one that serves the OCI 1.1
 * referrers API, which Debian's distribution 2.8 (src/sandbox/registry.ts) lacks.
 *
 * Know its differences before trusting a test against it: no authentication; manifests live in
 * memory (blobs on disk under `dataDir`), so a stopped registry comes back empty; blobs are shared
 * by every repository (no per-repository blob links, no cross-repository mount); an image manifest
 * is accepted even when its blobs are missing (an index, though, needs its child manifests); the
 * referrers listing takes `artifactType` from the config media type and ignores `?artifactType=`;
 * a repository it has never seen answers the referrers API with 404 NAME_UNKNOWN; and over TLS it
 * speaks HTTP/1.1 only (tools/ggcr-registry: its uploads hang over HTTP/2, go-containerregistry#1210).
 */
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'
import type {CA} from './pki.js'
import {loopbackRegistryFields, loopbackServingCert, probeV2} from './registry-common.js'
import {freePort, startProcess, tailLog, waitFor, type Proc} from './procs.js'
import {toolPath} from './tools.js'

export interface GgcrRegistryOptions {
  /** directory for this registry's blobs, certificates and log */
  runDir: string
  /** short name (files and messages); default `ggcr` */
  name?: string
  /** TLS with a certificate for 127.0.0.1 and localhost from this CA (true: a new CA) */
  tls?: {ca: CA} | boolean
}

export interface GgcrRegistry {
  /** `127.0.0.1:PORT` */
  host: string
  /** `http(s)://127.0.0.1:PORT` */
  url: string
  name: string
  /** the CA that signed the TLS certificate (when tls) */
  caFile?: string
  caPem?: string
  logFile: string
  /** where the blobs are (`sha256/<hex>` below it); manifests are in the process only */
  dataDir: string
  /** the serving process's pid; undefined once stopped */
  pid(): number | undefined
  stop(): Promise<void>
}

/** Start the ggcr registry and wait until `/v2/` answers 200. Throws KpiError('not-found') when the tool is not built. */
export async function startGgcrRegistry(opts: GgcrRegistryOptions): Promise<GgcrRegistry> {
  const bin = toolPath('ggcr-registry')
  const name = opts.name ?? 'ggcr'
  const dir = opts.runDir
  const dataDir = join(dir, `${name}-data`)
  await mkdir(dataDir, {recursive: true})

  let ca: CA | undefined
  let cert: {cert: string; key: string} | undefined
  if (opts.tls) {
    const served = await loopbackServingCert(dir, name, opts.tls)
    ca = served.ca
    cert = served
  }
  const scheme = cert ? 'https' : 'http'

  // A free port can be taken between choosing and binding: choose again a couple of times.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const args = ['--address', `127.0.0.1:${port}`, '--disk', dataDir, ...(cert ? ['--tls-cert', cert.cert, '--tls-key', cert.key] : [])]
    let proc: Proc | undefined
    try {
      proc = await startProcess({name, cmd: bin, args, logDir: dir})
      const p = proc
      await waitFor(async () => (await probeV2(`${scheme}://127.0.0.1:${port}`, ca?.certPem)) === 200,
        {what: `ggcr registry ${name} on 127.0.0.1:${port}`, timeoutMs: 20_000, intervalMs: 50, procs: [p]})
      return {...loopbackRegistryFields(port, scheme, name, ca, dataDir), logFile: proc.logFile, pid: () => (p.exit() ? undefined : p.pid), stop: () => p.stop()}
    } catch (e) {
      const tail = proc ? await tailLog(proc.logFile, 5) : ''
      await proc?.stop()
      if (attempt < 2 && /address already in use/.test(tail)) continue
      throw e
    }
  }
}
