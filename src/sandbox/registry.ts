/**
 * Real CNCF distribution registries on loopback for tests, benchmarks and the demo: Debian's
 * /usr/bin/docker-registry (distribution 2.8) with a generated config, optional htpasswd auth
 * and TLS from the sandbox PKI. Distribution 2.8 has no OCI referrers API, so clients use the
 * `sha256-<hex>` fallback tag against it.
 */
import {execFile} from 'node:child_process'
import {randomBytes, sign, X509Certificate} from 'node:crypto'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {KpiError} from '../errors.js'
import {makeCA, issueCert, type CA} from './pki.js'
import {loopbackRegistryFields, loopbackServingCert, probeV2} from './registry-common.js'
import {freePort, startProcess, tailLog, waitFor, type Proc} from './procs.js'

export const REGISTRY_BIN = process.env.KPI_DOCKER_REGISTRY_BIN ?? '/usr/bin/docker-registry'

/** Debian packages, not tools.sh builds: scripts/setup.sh installs them (tools.sh's hint sent users astray) */
const fromSetup = (pkg: string) => `run bash scripts/setup.sh (it installs Debian's ${pkg} package)`

export interface RegistryOptions {
  /** directory for this registry's config, storage, certificates and log */
  runDir: string
  /** short name (files and messages); default `registry` */
  name?: string
  /** one user, checked by htpasswd (bcrypt), or by the token server with `authMode: 'token'` */
  auth?: {username: string; password: string}
  /** more htpasswd users beside `auth` (a team's own account; distribution lets each push anywhere) */
  moreUsers?: Array<{username: string; password: string}>
  /**
   * `token`: distribution's bearer token auth, with a token server on loopback in this Node
   * process that checks `auth` (Basic on GET, or the OAuth2 POST grants) and signs RS256 JWTs.
   */
  authMode?: 'htpasswd' | 'token'
  /** with `authMode: 'token'`: a refresh token the token server also accepts (docker's identity token) */
  identityToken?: string
  /** TLS with a certificate for 127.0.0.1 and localhost from this CA (true: a new CA) */
  tls?: {ca: CA} | boolean
  /** a fixed port (default: a free one) */
  port?: number
  /** extra DNS names for the TLS certificate */
  hostnames?: string[]
  /** distribution 2.8 has no referrers API; reserved for a registry that has one */
  referrersApi?: never
  /**
   * the storage root of another registry to serve (default: one of its own): the same content
   * from a second server, e.g. over TLS beside plain HTTP, with nothing pushed twice
   */
  dataDir?: string
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
  /** with `authMode: 'token'`: the realm URL and how many tokens it has issued or refused */
  tokenRealm?: string
  tokenRequests?: () => number
  /** the serving process's pid (a new one after restart); undefined while stopped */
  pid(): number | undefined
  stop(): Promise<void>
  /** stop and start again on the same port with the same storage */
  restart(): Promise<void>
}

function run(cmd: string, args: string[], input: string | undefined, missingHint: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(new KpiError('not-found', `${cmd} not found`, {hint: missingHint}))
      else if (err) reject(new KpiError('failed', `${cmd} failed: ${String(stderr).trim() || err.message}`))
      else resolve(String(stdout))
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

interface TokenAuthConfig {
  realm: string
  service: string
  issuer: string
  rootcertbundle: string
}

function configYaml(o: {port: number; dataDir: string; htpasswd?: string; token?: TokenAuthConfig; cert?: string; key?: string}): string {
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
    ...(o.token ? {auth: {token: o.token}} : {}),
  }
  return JSON.stringify(cfg, null, 2) + '\n'
}

/** Start a registry and wait until `/v2/` answers (200, or 401 with auth). */
export async function startRegistry(opts: RegistryOptions): Promise<Registry> {
  const name = opts.name ?? 'registry'
  const dir = opts.runDir
  const dataDir = opts.dataDir ?? join(dir, `${name}-data`)
  await mkdir(dir, {recursive: true})
  await mkdir(dataDir, {recursive: true})

  let htpasswd: string | undefined
  let tokens: TokenServer | undefined
  if (opts.auth && opts.authMode === 'token') {
    tokens = await startTokenServer(join(dir, `${name}-token-ca`), opts.auth, opts.identityToken)
  } else if (opts.auth) {
    htpasswd = join(dir, `${name}.htpasswd`)
    // -i reads the password from stdin, so it never shows in a process listing. bcrypt's lowest
    // cost (4): the registry checks it on every request, and at htpasswd's default (5) that was
    // about 3 ms of registry CPU per request, the larger part of an authenticated request's cost.
    // A throw-away password on loopback gains nothing from a slower hash.
    const lines = await Promise.all([opts.auth, ...(opts.moreUsers ?? [])].map((u) => run('htpasswd', ['-niBC', '4', u.username], u.password, fromSetup('apache2-utils'))))
    await writeFile(htpasswd, lines.map((l) => l.trim() + '\n').join(''), {mode: 0o600})
  }

  let ca: CA | undefined
  let cert: {cert: string; key: string} | undefined
  if (opts.tls) {
    const served = await loopbackServingCert(dir, name, opts.tls, opts.hostnames)
    ca = served.ca
    cert = served
  }

  const scheme = cert ? 'https' : 'http'
  const configFile = join(dir, `${name}.config.yml`)
  let port = opts.port ?? 0
  let proc: Proc | undefined

  const launch = async (): Promise<void> => {
    await writeFile(configFile, configYaml({port, dataDir, htpasswd, token: tokens?.config, cert: cert?.cert, key: cert?.key}))
    // The registry allocates a lot per request over a small live heap, so at Go's default GOGC
    // (100) it collects every few requests: GOGC=400 took 300 requests from 0.59 to 0.42 CPU-s.
    // The heap stays in the tens of MiB. A GOGC the user set is kept.
    proc = await startProcess({name, cmd: REGISTRY_BIN, args: ['serve', configFile], logDir: dir, env: {GOGC: process.env.GOGC ?? '400'},
      missingHint: `${fromSetup('docker-registry')}, or set KPI_DOCKER_REGISTRY_BIN`})
    const p = proc
    await waitFor(async () => {
      const status = await probeV2(`${scheme}://127.0.0.1:${port}`, ca?.certPem)
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
      await tokens?.close()
      throw e
    }
  }

  return {
    ...loopbackRegistryFields(port, scheme, name, ca, dataDir),
    username: opts.auth?.username,
    password: opts.auth?.password,
    logFile: join(dir, `${name}.log`),
    tokenRealm: tokens?.config.realm,
    tokenRequests: tokens ? () => tokens.requests : undefined,
    pid: () => (proc && !proc.exit() ? proc.pid : undefined),
    stop: async () => {
      await proc?.stop()
      await tokens?.close()
    },
    restart: async () => {
      await proc?.stop()
      await launch()
    },
  }
}

interface TokenServer {
  config: TokenAuthConfig
  readonly requests: number
  close(): Promise<void>
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url')

async function readBody(req: IncomingMessage): Promise<string> {
  let s = ''
  for await (const chunk of req) s += String(chunk)
  return s
}

/**
 * A minimal token server for distribution's `auth: token`: it grants every requested action to
 * the one user (nothing to anonymous callers) in an RS256 JWT whose `x5c` header carries the
 * signing certificate, which distribution verifies against `rootcertbundle`.
 */
async function startTokenServer(caDir: string, user: {username: string; password: string}, identityToken?: string): Promise<TokenServer> {
  const ca = await makeCA(caDir, 'kpi sandbox token CA')
  const signer = await issueCert(ca, {name: 'token-signer', commonName: 'kpi sandbox token signer', usage: 'both', key: 'rsa'})
  const key = await readFile(signer.key, 'utf8')
  const x5c = new X509Certificate(signer.certPem).raw.toString('base64')
  const service = 'kpi-sandbox-registry'
  const issuer = 'kpi-sandbox-token-issuer'
  let requests = 0

  const grant = (subject: string, scopes: string[]): string => {
    const now = Math.floor(Date.now() / 1000)
    const access = subject ? scopes.flatMap((s) => {
      const m = /^([^:]+):(.+):([^:]+)$/.exec(s)
      return m ? [{type: m[1], name: m[2], actions: m[3]!.split(',')}] : []
    }) : []
    const header = b64url(JSON.stringify({typ: 'JWT', alg: 'RS256', x5c: [x5c]}))
    const claims = b64url(JSON.stringify({iss: issuer, sub: subject, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access}))
    const sig = sign('sha256', Buffer.from(`${header}.${claims}`), key)
    return `${header}.${claims}.${b64url(sig)}`
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    requests++
    const url = new URL(req.url ?? '/', 'http://token')
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, {'content-type': 'application/json'}).end(JSON.stringify(body))
    }
    if (url.pathname !== '/token') return reply(404, {error: 'not found'})
    let subject = ''
    let scopes: string[]
    if (req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req))
      scopes = (form.get('scope') ?? '').split(' ').filter(Boolean)
      const ok = form.get('grant_type') === 'refresh_token'
        ? !!identityToken && form.get('refresh_token') === identityToken
        : form.get('grant_type') === 'password' && form.get('username') === user.username && form.get('password') === user.password
      if (!ok) return reply(401, {error: 'invalid_grant'})
      subject = user.username
    } else {
      scopes = url.searchParams.getAll('scope')
      const authz = req.headers.authorization
      if (authz) {
        const [u, ...rest] = Buffer.from(authz.replace(/^Basic /, ''), 'base64').toString('utf8').split(':')
        if (!authz.startsWith('Basic ') || u !== user.username || rest.join(':') !== user.password) {
          return reply(401, {errors: [{code: 'UNAUTHORIZED', message: 'invalid credentials'}]})
        }
        subject = user.username
      }
    }
    const token = grant(subject, scopes)
    reply(200, {token, access_token: token, expires_in: 300, issued_at: new Date().toISOString()})
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.writeHead(500).end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  // like the registry process, the token server must not keep a finished test run alive
  server.unref()
  const port = (server.address() as AddressInfo).port
  return {
    config: {realm: `http://127.0.0.1:${port}/token`, service, issuer, rootcertbundle: ca.cert},
    get requests() {
      return requests
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
