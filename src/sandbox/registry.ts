/**
 * Real CNCF distribution registries on loopback for tests, benchmarks and the demo: Debian's
 * /usr/bin/docker-registry (distribution 2.8) with a generated config, optional htpasswd auth
 * and TLS from the sandbox PKI. Distribution 2.8 has no OCI referrers API, so clients use the
 * `sha256-<hex>` fallback tag against it.
 */
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdir, writeFile} from 'node:fs/promises'
import {request as httpRequest} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {join} from 'node:path'
import {KpiError} from '../errors.js'
import {issueCert, makeCA, type CA} from './pki.js'
import {freePort, startProcess, tailLog, waitFor, type Proc} from './procs.js'

export const REGISTRY_BIN = process.env.KPI_DOCKER_REGISTRY_BIN ?? '/usr/bin/docker-registry'

export interface RegistryOptions {
  /** directory for this registry's config, storage, certificates and log */
  runDir: string
  /** short name (files and messages); default `registry` */
  name?: string
  /** htpasswd (bcrypt) authentication with this one user */
  auth?: {username: string; password: string}
  /** TLS with a certificate for 127.0.0.1 and localhost from this CA (true: a new CA) */
  tls?: {ca: CA} | boolean
  /** a fixed port (default: a free one) */
  port?: number
  /** extra DNS names for the TLS certificate */
  hostnames?: string[]
  /** distribution 2.8 has no referrers API; reserved for a registry that has one */
  referrersApi?: never
}

export interface Registry {
  /** `127.0.0.1:PORT` */
  host: string
  /** `http(s)://127.0.0.1:PORT` */
  url: string
  name: string
  /** the CA that signed the TLS certificate (when tls) */
  caFile?: string
  caPem?: string
  username?: string
  password?: string
  /** filesystem storage root (`docker/registry/v2/...` below it) */
  dataDir: string
  logFile: string
  stop(): Promise<void>
  /** stop and start again on the same port with the same storage */
  restart(): Promise<void>
}

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, (err, stdout, stderr) => {
      if (err) reject(new KpiError('failed', `${cmd} failed: ${String(stderr).trim() || err.message}`))
      else resolve(String(stdout))
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

/** One GET /v2/: the status, or undefined when nothing answers yet. */
function probe(url: string, caPem?: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const u = new URL('/v2/', url)
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {method: 'GET', ca: caPem, timeout: 2000}, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', () => resolve(undefined))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

function configYaml(o: {port: number; dataDir: string; htpasswd?: string; cert?: string; key?: string}): string {
  // JSON is YAML: no quoting surprises with paths
  const cfg: Record<string, unknown> = {
    version: 0.1,
    log: {level: 'info', formatter: 'text', accesslog: {disabled: false}},
    storage: {
      filesystem: {rootdirectory: o.dataDir},
      delete: {enabled: true},
      cache: {blobdescriptor: 'inmemory'},
      maintenance: {uploadpurging: {enabled: false}},
    },
    http: {
      addr: `127.0.0.1:${o.port}`,
      secret: randomBytes(16).toString('hex'),
      headers: {'X-Content-Type-Options': ['nosniff']},
      ...(o.cert ? {tls: {certificate: o.cert, key: o.key}} : {}),
    },
    ...(o.htpasswd ? {auth: {htpasswd: {realm: 'kpi-sandbox', path: o.htpasswd}}} : {}),
  }
  return JSON.stringify(cfg, null, 2) + '\n'
}

/** Start a registry and wait until `/v2/` answers (200, or 401 with auth). */
export async function startRegistry(opts: RegistryOptions): Promise<Registry> {
  const name = opts.name ?? 'registry'
  const dir = opts.runDir
  const dataDir = join(dir, `${name}-data`)
  await mkdir(dataDir, {recursive: true})

  let htpasswd: string | undefined
  if (opts.auth) {
    htpasswd = join(dir, `${name}.htpasswd`)
    // -i reads the password from stdin, so it never shows in a process listing
    const line = await run('htpasswd', ['-niB', opts.auth.username], opts.auth.password)
    await writeFile(htpasswd, line.trim() + '\n', {mode: 0o600})
  }

  let ca: CA | undefined
  let cert: {cert: string; key: string} | undefined
  if (opts.tls) {
    ca = opts.tls === true ? await makeCA(join(dir, `${name}-ca`), `kpi sandbox CA (${name})`) : opts.tls.ca
    cert = await issueCert(ca, {
      name: `${name}-${randomBytes(3).toString('hex')}`, commonName: '127.0.0.1',
      dnsNames: ['localhost', ...(opts.hostnames ?? [])], ips: ['127.0.0.1'], usage: 'server',
    })
  }

  const scheme = cert ? 'https' : 'http'
  const configFile = join(dir, `${name}.config.yml`)
  let port = opts.port ?? 0
  let proc: Proc | undefined

  const launch = async (): Promise<void> => {
    await writeFile(configFile, configYaml({port, dataDir, htpasswd, cert: cert?.cert, key: cert?.key}))
    proc = await startProcess({name, cmd: REGISTRY_BIN, args: ['serve', configFile], logDir: dir})
    const p = proc
    await waitFor(async () => {
      const status = await probe(`${scheme}://127.0.0.1:${port}`, ca?.certPem)
      return status === 200 || status === 401
    }, {what: `registry ${name} on 127.0.0.1:${port}`, timeoutMs: 20_000, intervalMs: 50, procs: [p]})
  }

  // A free port can be taken between choosing and binding: choose again a couple of times.
  for (let attempt = 0; ; attempt++) {
    if (!opts.port) port = await freePort()
    try {
      await launch()
      break
    } catch (e) {
      const tail = proc ? await tailLog(proc.logFile, 5) : ''
      await proc?.stop()
      if (attempt < 2 && !opts.port && /address already in use/.test(tail)) continue
      throw e
    }
  }

  const host = `127.0.0.1:${port}`
  return {
    host,
    url: `${scheme}://${host}`,
    name,
    caFile: ca?.cert,
    caPem: ca?.certPem,
    username: opts.auth?.username,
    password: opts.auth?.password,
    dataDir,
    logFile: join(dir, `${name}.log`),
    stop: async () => {
      await proc?.stop()
    },
    restart: async () => {
      await proc?.stop()
      await launch()
    },
  }
}
