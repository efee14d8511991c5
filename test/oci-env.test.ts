/**
 * What the registry client takes from the environment rather than from options: proxies
 * (HTTP_PROXY/HTTPS_PROXY/NO_PROXY, either case) and a docker config whose `credsStore` names a
 * credential helper. Real registries on loopback, a real forward proxy in this process, and the
 * CLI where the environment is all a user has.
 */
import {chmod, mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {createServer, request as httpRequest, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {tunnelTo} from './helpers/proxy.js'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {bundleImages} from '../src/bundle/images.js'
import {loadBundle} from '../src/bundle/load.js'
import {KpiError} from '../src/errors.js'
import {createRegistryClient, type OciClient, type OciClientOptions} from '../src/oci/client.js'
import {sha256Digest} from '../src/oci/digest.js'
import {credentialResolver} from '../src/oci/dockerconfig.js'
import {parseReference} from '../src/oci/reference.js'
import {MediaTypes, type Repo} from '../src/oci/types.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi} from './helpers/cli.js'

const PASSWORD = 'canary-credsStore-Pw-42d1'
const WRONG = 'canary-wrong-secret-9e7b'
/** a name no DNS resolves: only the test proxy knows where it is */
const FAKE = 'registry.kpi-env.test'
const PROXY_VARS = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy']

let dir: string
let plain: Registry
let secured: Registry
let tlsReg: Registry
let sb: Sandbox
const clients: OciClient[] = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-oci-env-'))
  ;[plain, secured, tlsReg, sb] = await Promise.all([
    startRegistry({runDir: dir, name: 'plain'}),
    startRegistry({runDir: dir, name: 'secured', auth: {username: 'alice', password: PASSWORD}}),
    startRegistry({runDir: dir, name: 'tls', tls: true, hostnames: [FAKE]}),
    startSandbox({runDir: join(dir, 'sandbox'), samples: ['v1']}),
  ])
})

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await Promise.all([plain?.stop(), secured?.stop(), tlsReg?.stop(), sb?.stop()])
  await rm(dir, {recursive: true, force: true})
})

const client = (o: OciClientOptions = {}): OciClient => {
  const c = createRegistryClient({credentials: async () => undefined, retryPolicy: {baseMs: 5, maxMs: 200}, ...o})
  clients.push(c)
  return c
}

/** Push a config blob and a manifest, then read both back. */
async function roundTrip(c: OciClient, repo: Repo): Promise<string> {
  const config = Buffer.from(JSON.stringify({repo: repo.repository, at: Date.now()}))
  const digest = sha256Digest(config)
  await c.putBlob(repo, digest, config.length, () => Readable.from([config]))
  const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest,
    config: {mediaType: MediaTypes.ociConfig, digest, size: config.length}, layers: []}))
  const md = await c.putManifest(repo, 'v1', manifest, MediaTypes.ociManifest)
  expect((await c.getManifest(repo, md)).bytes.equals(manifest)).toBe(true)
  expect(await c.hasBlob(repo, digest)).toBe(true)
  return md
}

async function failure(p: Promise<unknown>): Promise<KpiError> {
  const e = await p.then(() => undefined, (err: unknown) => err)
  expect(e).toBeInstanceOf(KpiError)
  return e as KpiError
}

interface ForwardProxy {
  url: string
  /** absolute-URI requests (plain HTTP through the proxy): their URLs */
  requests: string[]
  /** CONNECT tunnels: their targets */
  tunnels: string[]
  close(): Promise<void>
}

/**
 * A forward proxy on loopback with its own "DNS": FAKE:<port> is 127.0.0.1:<port>; anything
 * else it refuses. A request that reaches a registry by the FAKE name can only have come through it.
 */
async function startForwardProxy(): Promise<ForwardProxy> {
  const requests: string[] = []
  const tunnels: string[] = []
  const target = (hostPort: string): number | undefined => {
    const [host, port] = hostPort.split(':')
    return host === FAKE && port ? Number(port) : undefined
  }
  const server: Server = createServer((req, res) => {
    requests.push(req.url!)
    const u = new URL(req.url!)
    const port = target(u.host)
    if (!port) return void res.writeHead(502).end()
    const up = httpRequest({hostname: '127.0.0.1', port, method: req.method, path: u.pathname + u.search, headers: req.headers}, (r) => {
      res.writeHead(r.statusCode!, r.headers)
      r.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    tunnels.push(req.url!)
    const port = target(req.url!)
    if (!port) return void socket.end('HTTP/1.1 403 Forbidden\r\n\r\n')
    tunnelTo(port, socket, head)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests, tunnels,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

describe('proxy settings from the environment', () => {
  let proxy: ForwardProxy
  const saved: Record<string, string | undefined> = {}
  const setEnv = (vars: Record<string, string>) => {
    for (const [k, v] of Object.entries(vars)) process.env[k] = v
  }

  beforeAll(async () => {
    for (const k of PROXY_VARS) {
      saved[k] = process.env[k]
      delete process.env[k]
    }
    proxy = await startForwardProxy()
  })
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    for (const k of PROXY_VARS) delete process.env[k]
  })
  afterAll(async () => {
    for (const k of PROXY_VARS) if (saved[k] !== undefined) process.env[k] = saved[k]
    await proxy?.close()
  })

  it('sends a plain-HTTP registry through HTTP_PROXY, and loopback addresses direct', async () => {
    const name = `${FAKE}:${plain.host.split(':')[1]}`
    setEnv({HTTP_PROXY: proxy.url})
    const c = client({plainHttp: () => true})
    const before = proxy.requests.length
    await roundTrip(c, {registry: name, repository: 'env/http'})
    const seen = proxy.requests.slice(before)
    expect(seen).toContain(`http://${name}/v2/env/http/manifests/v1`)
    expect(seen.every((u) => u.startsWith(`http://${name}/`))).toBe(true)

    // 127.0.0.1 and localhost never go through the proxy
    const mid = proxy.requests.length
    await roundTrip(c, {registry: plain.host, repository: 'env/direct'})
    await roundTrip(c, {registry: `localhost:${plain.host.split(':')[1]}`, repository: 'env/direct-localhost'})
    expect(proxy.requests.length).toBe(mid)
  })

  // Go bypasses the proxy for every ip.IsLoopback() address, not only those NO_PROXY can name
  it('keeps all of 127.0.0.0/8 off the proxy, like Go', async () => {
    setEnv({HTTP_PROXY: proxy.url})
    const before = proxy.requests.length
    // the registry listens on 127.0.0.1 only, so a direct try is refused; either way it errs
    const err = await client({plainHttp: () => true, retries: 0}).ping(`127.0.0.2:${plain.host.split(':')[1]}`).then(() => undefined, (e: unknown) => e)
    expect(proxy.requests.slice(before)).toEqual([])
    // refused by 127.0.0.2 itself: the client went there directly, not nowhere
    expect(String((err as Error | undefined)?.message)).toMatch(/127\.0\.0\.2.*(refused|connect)/i)
  })

  it('reads the lower-case http_proxy too', async () => {
    const name = `${FAKE}:${plain.host.split(':')[1]}`
    setEnv({http_proxy: proxy.url})
    const before = proxy.requests.length
    await client({plainHttp: () => true}).ping(name)
    expect(proxy.requests.length).toBeGreaterThan(before)
  })

  it('tunnels HTTPS through HTTPS_PROXY with CONNECT, TLS still verified end to end', async () => {
    const name = `${FAKE}:${tlsReg.host.split(':')[1]}`
    setEnv({HTTPS_PROXY: proxy.url})
    const before = proxy.tunnels.length
    await roundTrip(client({caCerts: [tlsReg.caPem!]}), {registry: name, repository: 'env/tunnel'})
    const tunnels = proxy.tunnels.slice(before)
    expect(tunnels.length).toBeGreaterThan(0)
    expect(new Set(tunnels)).toEqual(new Set([name]))
    // the proxy only carries bytes: without the registry's CA the tunnelled TLS is refused
    const e = await failure(client().ping(name))
    expect(e.kind).toBe('tls')
    expect(e.message).toContain(name)
  })

  it('NO_PROXY (a domain suffix) sends the registry direct, where its name does not resolve', async () => {
    const name = `${FAKE}:${plain.host.split(':')[1]}`
    setEnv({HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NO_PROXY: 'example.org,kpi-env.test'})
    const before = proxy.requests.length + proxy.tunnels.length
    const e = await failure(client({plainHttp: () => true}).ping(name))
    expect(e.kind).toBe('network')
    expect(e.message).toBe(`cannot reach registry ${name} (host not found)`)
    expect(proxy.requests.length + proxy.tunnels.length).toBe(before)
  })

  it('kpi relocate honours HTTP_PROXY in its environment: the destination through the proxy, loopback sources direct', async () => {
    const name = `${FAKE}:${plain.host.split(':')[1]}`
    const lockFile = join(dir, 'proxied-lock.yaml')
    const before = proxy.requests.length
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${name}/proxied`, '--lock-output', lockFile, '--plain-http', name],
      {...sb.env, HTTP_PROXY: proxy.url, NO_PROXY: ''})
    expect(r.code, r.stderr).toBe(0)
    const seen = proxy.requests.slice(before)
    expect(seen.length).toBeGreaterThan(0)
    // every proxied request went to the destination; the public registry (127.0.0.1) was read direct
    expect(seen.every((u) => u.startsWith(`http://${name}/v2/proxied/`) || u === `http://${name}/v2/`)).toBe(true)
    const lock = (await loadBundle(lockFile)).bundle
    const direct = client({plainHttp: () => true})
    for (const img of bundleImages(lock)) {
      const ref = parseReference(img.ref)
      expect(ref.registry).toBe(name)
      // the images are in the registry behind the fake name, read here by its real address
      expect(await direct.headManifest({registry: plain.host, repository: ref.repository}, ref.digest!)).toMatchObject({digest: ref.digest})
    }
  })
})

describe('docker config credsStore', () => {
  let bin: string
  let calls: string

  beforeAll(async () => {
    bin = join(dir, 'bin')
    await mkdir(bin, {recursive: true})
    calls = join(dir, 'helper-calls.log')
    // two helpers for the same registry: one knows the password, one has a stale one
    for (const [helperName, secret] of [['kpitest', PASSWORD], ['kpistale', WRONG]] as const) {
      const helper = join(bin, `docker-credential-${helperName}`)
      await writeFile(helper, `#!/bin/sh
[ "$1" = get ] || exit 1
read server
echo "${helperName} $server" >> "${calls}"
if [ "$server" = "${secured.host}" ]; then
  printf '{"ServerURL":"%s","Username":"alice","Secret":"%s"}\\n' "$server" "${secret}"
else
  echo "credentials not found in native keychain"
  exit 1
fi
`)
      await chmod(helper, 0o755)
    }
  })

  const configDir = async (name: string, store: string): Promise<string> => {
    const d = join(dir, name)
    await mkdir(d, {recursive: true})
    // credsStore alone: no auths, no credHelpers
    await writeFile(join(d, 'config.json'), JSON.stringify({credsStore: store}))
    return d
  }
  const helperEnv = (cfgDir: string) => ({...process.env, DOCKER_CONFIG: cfgDir, PATH: `${bin}:${process.env.PATH}`})

  it('pushes with the credentials the credsStore helper returns', async () => {
    const cfgDir = await configDir('docker-store', 'kpitest')
    const c = client({plainHttp: () => true, credentials: credentialResolver({env: helperEnv(cfgDir)})})
    await roundTrip(c, {registry: secured.host, repository: 'store/ok'})
    await roundTrip(c, {registry: secured.host, repository: 'store/ok2'})
    expect((await readFile(calls, 'utf8')).trim().split('\n')).toContain(`kpitest ${secured.host}`)
    // and without the helper's answer the registry does refuse: it is the helper that let us in
    const anon = await failure(client({plainHttp: () => true}).ping(secured.host))
    expect(anon.kind).toBe('auth')
  })

  it('refuses a stale secret from the helper with kind auth, naming the registry and never the secret', async () => {
    const cfgDir = await configDir('docker-stale', 'kpistale')
    const c = client({plainHttp: () => true, credentials: credentialResolver({env: helperEnv(cfgDir)})})
    const repo = {registry: secured.host, repository: 'store/stale'}
    for (const e of [await failure(c.ping(secured.host)), await failure(c.putBlob(repo, sha256Digest('x'), 1, () => Readable.from([Buffer.from('x')])))]) {
      expect(e.kind).toBe('auth')
      expect(e.message).toContain(secured.host)
      const shown = `${e.message} ${e.hint ?? ''} ${JSON.stringify(e.details ?? {})} ${String(e.stack)}`
      for (const s of [WRONG, PASSWORD]) {
        expect(shown).not.toContain(s)
        expect(shown).not.toContain(Buffer.from(s).toString('base64'))
        expect(shown).not.toContain(Buffer.from(`alice:${s}`).toString('base64'))
      }
    }
  })

  it('kpi relocate uses credsStore from DOCKER_CONFIG, and fails in one line on a stale secret', async () => {
    const okDir = await configDir('docker-store-cli', 'kpitest')
    const env = {KPI_PLAIN_HTTP: `${sb.public.host},${secured.host}`, PATH: `${bin}:${process.env.PATH}`}
    const ok = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${secured.host}/store-cli`, '--lock-output', join(dir, 'store-lock.yaml')],
      {...env, DOCKER_CONFIG: okDir})
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout + ok.stderr).not.toContain(PASSWORD)
    const lock = (await loadBundle(join(dir, 'store-lock.yaml'))).bundle
    const check = client({plainHttp: () => true, credentials: async () => ({username: 'alice', password: PASSWORD})})
    for (const img of bundleImages(lock)) {
      const ref = parseReference(img.ref)
      expect(await check.headManifest({registry: ref.registry, repository: ref.repository}, ref.digest!)).toBeDefined()
    }

    const staleDir = await configDir('docker-stale-cli', 'kpistale')
    const bad = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${secured.host}/stale-cli`, '--lock-output', join(dir, 'stale-lock.yaml')],
      {...env, DOCKER_CONFIG: staleDir})
    const line = expectCleanFailure(bad)
    expect(line).toContain(secured.host)
    expect(bad.stdout + bad.stderr).not.toContain(WRONG)
    expect(bad.stdout + bad.stderr).not.toContain(PASSWORD)
  })
})

describe('KPI_REGISTRY_USERNAME/PASSWORD without KPI_REGISTRY_HOSTNAME', () => {
  const TOKEN_PW = 'canary-token-source-Pw-77a0'
  let tokenReg: Registry
  let srcLock: string

  beforeAll(async () => {
    // a source like Docker Hub: a token server that refuses a wrong password (and grants nothing anonymous)
    tokenReg = await startRegistry({runDir: dir, name: 'token-src', auth: {username: 'carol', password: TOKEN_PW}, authMode: 'token'})
    srcLock = join(dir, 'token-src-lock.yaml')
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${tokenReg.host}/public`, '--lock-output', srcLock],
      {KPI_REGISTRY_USERNAME_T: 'carol', KPI_REGISTRY_PASSWORD_T: TOKEN_PW, KPI_REGISTRY_HOSTNAME_T: tokenReg.host, DOCKER_CONFIG: join(dir, 'no-docker')})
    expect(r.code, r.stderr).toBe(0)
  })
  afterAll(async () => {
    await tokenReg?.stop()
  })

  it('are for the --to-repo registry only: the source keeps its own credentials and never gets them', async () => {
    const cfg = join(dir, 'docker-token-src')
    await mkdir(cfg, {recursive: true})
    await writeFile(join(cfg, 'config.json'), JSON.stringify({auths: {[tokenReg.host]: {auth: Buffer.from(`carol:${TOKEN_PW}`).toString('base64')}}}))
    const lock = join(dir, 'token-dst-lock.yaml')
    // the destination's password would be refused by the source's token server, failing the run
    const r = await kpi(['relocate', '-b', srcLock, '--to-repo', `${secured.host}/from-token`, '--lock-output', lock],
      {DOCKER_CONFIG: cfg, KPI_REGISTRY_USERNAME: 'alice', KPI_REGISTRY_PASSWORD: PASSWORD})
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout + r.stderr).not.toContain(PASSWORD)
    const check = client({credentials: async () => ({username: 'alice', password: PASSWORD})})
    const images = bundleImages((await loadBundle(lock)).bundle)
    expect(images.length).toBeGreaterThan(3)
    for (const img of images) {
      const ref = parseReference(img.ref)
      expect(ref.registry).toBe(secured.host)
      expect(await check.headManifest({registry: ref.registry, repository: ref.repository}, ref.digest!)).toBeDefined()
    }
  })

  it('are left unused, with a note, by a command that writes to no registry', async () => {
    const r = await kpi(['relocate', '-b', srcLock, '--to-tar', join(dir, 'token-src.tar')],
      {DOCKER_CONFIG: join(dir, 'no-docker'), KPI_REGISTRY_USERNAME: 'carol', KPI_REGISTRY_PASSWORD: TOKEN_PW})
    // carol's password is right for the source, but nothing said it is the source's
    const line = expectCleanFailure(r)
    expect(line).toContain(tokenReg.host)
    expect(r.stderr).toContain('have no KPI_REGISTRY_HOSTNAME and this command writes to no registry')
    expect(r.stderr).toContain(`KPI_REGISTRY_HOSTNAME=${tokenReg.host}`)
    expect(r.stdout + r.stderr).not.toContain(TOKEN_PW)
  })
})
