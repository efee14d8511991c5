import {chmod, mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {createRegistryClient, type OciClient} from '../src/oci/client.js'
import {sha256Digest} from '../src/oci/digest.js'
import {credentialResolver, credentialsFor} from '../src/oci/dockerconfig.js'
import {isLoopbackRegistry} from '../src/oci/transport.js'
import {MediaTypes, type Credentials, type Repo} from '../src/oci/types.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'

const PASSWORD = 'canary-Pa55w0rd-7f3c'
const IDENTITY = 'canary-identity-token-91ab'

/** Push a config blob and a manifest, then read both back: a full round trip through auth. */
async function roundTrip(client: OciClient, repo: Repo): Promise<void> {
  const config = Buffer.from(JSON.stringify({repo: repo.repository, at: Date.now()}))
  const digest = sha256Digest(config)
  await client.putBlob(repo, digest, config.length, () => Readable.from([config]))
  const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest,
    config: {mediaType: MediaTypes.ociConfig, digest, size: config.length}, layers: []}))
  const md = await client.putManifest(repo, 'v1', manifest, MediaTypes.ociManifest)
  expect((await client.getManifest(repo, md)).bytes.equals(manifest)).toBe(true)
  expect(await client.hasBlob(repo, digest)).toBe(true)
}

async function failure(p: Promise<unknown>): Promise<KpiError> {
  const e = await p.then(() => undefined, (err: unknown) => err)
  expect(e).toBeInstanceOf(KpiError)
  return e as KpiError
}

/** Nothing secret in what a user would see of the error (message, hint, and the JSON of it). */
function expectNoSecrets(e: KpiError, ...secrets: string[]): void {
  const shown = `${e.message} ${e.hint ?? ''} ${JSON.stringify(e.details ?? {})} ${String(e.stack)}`
  for (const s of secrets) {
    expect(shown).not.toContain(s)
    expect(shown).not.toContain(Buffer.from(s).toString('base64'))
  }
}

describe('registry authentication with htpasswd (Basic)', () => {
  let dir: string
  let reg: Registry
  let port: string
  const clients: OciClient[] = []
  const client = (o: Parameters<typeof createRegistryClient>[0]): OciClient => {
    const c = createRegistryClient({plainHttp: isLoopbackRegistry, ...o})
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-oci-auth-'))
    reg = await startRegistry({runDir: dir, name: 'basic', auth: {username: 'alice', password: PASSWORD}})
    port = reg.host.split(':')[1]!
  })
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await reg?.stop()
    await rm(dir, {recursive: true, force: true})
  })

  it('uses credentials from the auths of a docker config (DOCKER_CONFIG)', async () => {
    const cfgDir = join(dir, 'docker-auths')
    await mkdir(cfgDir)
    // docker writes keys with or without a scheme; http://host/v1/ must match host too
    await writeFile(join(cfgDir, 'config.json'), JSON.stringify({auths: {[`http://${reg.host}/v1/`]: {auth: Buffer.from(`alice:${PASSWORD}`).toString('base64')}}}))
    const env = {...process.env, DOCKER_CONFIG: cfgDir}
    const c = client({credentials: credentialResolver({env})})
    await c.ping(reg.host)
    await roundTrip(c, {registry: reg.host, repository: 'team/auths'})
    expect(await credentialsFor(reg.host, {env})).toMatchObject({username: 'alice', source: `docker config ${join(cfgDir, 'config.json')}`})
  })

  it('uses a credHelpers entry backed by docker-credential-kpitest on PATH', async () => {
    const cfgDir = join(dir, 'docker-helper')
    const bin = join(dir, 'bin')
    await mkdir(cfgDir)
    await mkdir(bin, {recursive: true})
    const calls = join(dir, 'helper-calls.log')
    const helper = join(bin, 'docker-credential-kpitest')
    await writeFile(helper, `#!/bin/sh
[ "$1" = get ] || exit 1
read server
echo "$server" >> "${calls}"
if [ "$server" = "localhost:${port}" ]; then
  printf '{"ServerURL":"%s","Username":"alice","Secret":"%s"}\\n' "$server" "${PASSWORD}"
else
  echo "credentials not found in native keychain"
  exit 1
fi
`)
    await chmod(helper, 0o755)
    // the helper is for localhost:PORT only; 127.0.0.1:PORT (same registry) has nothing
    await writeFile(join(cfgDir, 'config.json'), JSON.stringify({credHelpers: {[`localhost:${port}`]: 'kpitest'}, credsStore: 'kpitest'}))
    const env = {...process.env, DOCKER_CONFIG: cfgDir, PATH: `${bin}:${process.env.PATH}`}
    const c = client({credentials: credentialResolver({env})})
    const viaHelper: Repo = {registry: `localhost:${port}`, repository: 'team/helper'}
    await roundTrip(c, viaHelper)
    await roundTrip(c, {...viaHelper, repository: 'team/helper2'})
    // asked once per registry, however many requests
    expect((await readFile(calls, 'utf8')).trim().split('\n')).toEqual([`localhost:${port}`])
    // credsStore answers "not found" for 127.0.0.1: anonymous, refused with a hint to log in
    const e = await failure(c.ping(reg.host))
    expect(e.kind).toBe('auth')
    expect(e.message).toBe(`registry ${reg.host} requires authentication`)
    expect(e.hint).toContain('docker login')
  })

  it('refuses a wrong password with kind auth, naming the registry and never the password', async () => {
    const cfgDir = join(dir, 'docker-wrong')
    await mkdir(cfgDir)
    const wrong = `${PASSWORD}-wrong`
    await writeFile(join(cfgDir, 'config.json'), JSON.stringify({auths: {[reg.host]: {username: 'alice', password: wrong}}}))
    const c = client({credentials: credentialResolver({env: {...process.env, DOCKER_CONFIG: cfgDir}})})
    const e = await failure(c.ping(reg.host))
    expect(e.kind).toBe('auth')
    expect(e.message).toBe(`registry ${reg.host} refused the credentials for user "alice"`)
    expect(e.hint).toContain(join(cfgDir, 'config.json'))
    expectNoSecrets(e, wrong, PASSWORD)
    // the same on a data request, and on an upload
    const repo = {registry: reg.host, repository: 'team/wrong'}
    const e2 = await failure(c.getManifest(repo, 'v1'))
    expect(e2.kind).toBe('auth')
    expectNoSecrets(e2, wrong)
    const e3 = await failure(c.putBlob(repo, sha256Digest('x'), 1, () => Readable.from([Buffer.from('x')])))
    expect(e3.kind).toBe('auth')
    expectNoSecrets(e3, wrong)
  })

  it('takes KPI_REGISTRY_USERNAME/PASSWORD, scoped by KPI_REGISTRY_HOSTNAME', async () => {
    const env = {HOME: dir, KPI_REGISTRY_USERNAME: 'alice', KPI_REGISTRY_PASSWORD: PASSWORD, KPI_REGISTRY_HOSTNAME: reg.host}
    const c = client({credentials: credentialResolver({env})})
    await roundTrip(c, {registry: reg.host, repository: 'team/env'})
    expect(await credentialsFor('other.example:5000', {env})).toBeUndefined()
    // explicit credentials (from flags) win over the environment
    const explicit = await credentialsFor(reg.host, {env, explicit: {[reg.host]: {username: 'bob', password: 'x'}}})
    expect(explicit?.username).toBe('bob')
  })
})

describe('registry authentication with bearer tokens (distribution token auth)', () => {
  let dir: string
  let reg: Registry
  const clients: OciClient[] = []
  const client = (creds: Credentials | undefined): OciClient => {
    const c = createRegistryClient({plainHttp: isLoopbackRegistry, credentials: async () => creds})
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-oci-token-'))
    reg = await startRegistry({runDir: dir, name: 'token', auth: {username: 'alice', password: PASSWORD}, authMode: 'token', identityToken: IDENTITY})
  })
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await reg?.stop()
    await rm(dir, {recursive: true, force: true})
  })

  it('pushes and pulls with a token fetched with Basic credentials, reusing cached tokens', async () => {
    const c = client({username: 'alice', password: PASSWORD})
    await c.ping(reg.host)
    const repo = {registry: reg.host, repository: 'team/app'}
    const before = reg.tokenRequests!()
    await roundTrip(c, repo)
    for (let i = 0; i < 5; i++) await c.getManifest(repo, 'v1')
    // one push token covers every request to the repository: no per-request re-auth
    expect(reg.tokenRequests!() - before).toBe(1)
    // a cross-repository mount asks for pull on the source as well
    const blob = Buffer.from('shared layer')
    await c.putBlob(repo, sha256Digest(blob), blob.length, () => Readable.from([blob]))
    const other = {registry: reg.host, repository: 'team/other'}
    expect(await c.mountBlob(other, sha256Digest(blob), repo.repository)).toBe(true)
    expect(await c.hasBlob(other, sha256Digest(blob))).toBe(true)
  })

  it('exchanges an identity token with an OAuth2 POST', async () => {
    const c = client({identityToken: IDENTITY})
    await c.ping(reg.host)
    await roundTrip(c, {registry: reg.host, repository: 'team/oauth'})
    const bad = client({identityToken: 'not-the-token'})
    const e = await failure(bad.ping(reg.host))
    expect(e.kind).toBe('auth')
    expect(e.message).toBe(`registry ${reg.host} refused the credentials for the identity token`)
    expectNoSecrets(e, 'not-the-token')
  })

  it('reports wrong credentials and anonymous access as kind auth without secrets', async () => {
    const wrong = client({username: 'alice', password: 'nope-secret'})
    const e = await failure(wrong.getManifest({registry: reg.host, repository: 'team/app'}, 'v1'))
    expect(e.kind).toBe('auth')
    expect(e.message).toBe(`registry ${reg.host} refused the credentials for user "alice"`)
    expectNoSecrets(e, 'nope-secret', PASSWORD)
    const anonymous = client(undefined)
    const e2 = await failure(anonymous.getManifest({registry: reg.host, repository: 'team/app'}, 'v1'))
    expect(e2.kind).toBe('auth')
    expect(e2.message).toBe(`registry ${reg.host} requires authentication`)
  })
})

describe('a token realm in the clear', () => {
  it('gets no credentials over plain HTTP unless its host is named plain HTTP (or loopback)', async () => {
    const {createServer} = await import('node:http')
    // a registry whose challenge sends clients to a token server over plain HTTP, on another host
    const realm = 'http://tokens.kpi-test.invalid/token'
    const server = createServer((_req, res) => {
      res.writeHead(401, {'www-authenticate': `Bearer realm="${realm}",service="registry"`, 'content-type': 'application/json'})
      res.end('{"errors":[{"code":"UNAUTHORIZED"}]}')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const host = `127.0.0.1:${(server.address() as {port: number}).port}`
    const creds = {username: 'alice', password: 'realm-secret'}
    const open = (plain: string[]) => createRegistryClient({plainHttp: (h) => isLoopbackRegistry(h) || plain.includes(h), credentials: async () => creds})
    const clients = [open([]), open(['tokens.kpi-test.invalid']), createRegistryClient({plainHttp: isLoopbackRegistry, credentials: async () => undefined})]
    try {
      const e = await failure(clients[0]!.getManifest({registry: host, repository: 'team/app'}, 'v1'))
      expect(e.kind).toBe('auth')
      expect(e.message).toBe(`registry ${host} named a plain-HTTP token server, http://tokens.kpi-test.invalid: kpi does not send credentials to it unencrypted`)
      expect(e.hint).toContain('--plain-http tokens.kpi-test.invalid')
      expectNoSecrets(e, 'realm-secret')
      // named plain HTTP, or asked with no credentials at all: the token server is asked (it does not exist)
      for (const c of clients.slice(1)) {
        const e2 = await failure(c.getManifest({registry: host, repository: 'team/app'}, 'v1'))
        expect(e2.message).toContain('tokens.kpi-test.invalid (token server of')
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()))
      server.close()
    }
  })
})

describe('a token server that is briefly unavailable', () => {
  it('is asked again on 503 and on 429, as every idempotent request is', async () => {
    const {createServer} = await import('node:http')
    const manifest = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociManifest,
      config: {mediaType: MediaTypes.ociConfig, digest: sha256Digest('{}'), size: 2}, layers: []}))
    const answers: Array<{status: number; headers?: Record<string, string>}> = [{status: 503}, {status: 429, headers: {'retry-after': '0'}}]
    let tokenRequests = 0
    // a registry and its token server on one loopback port
    const server = createServer((req, res) => {
      const realm = `http://${req.headers.host}/token`
      if (req.url!.startsWith('/token')) {
        tokenRequests++
        const a = answers.shift()
        if (a) return void res.writeHead(a.status, {'content-type': 'text/plain', ...a.headers}).end('try later')
        return void res.writeHead(200, {'content-type': 'application/json'}).end('{"token":"granted"}')
      }
      if (req.headers.authorization !== 'Bearer granted') {
        return void res.writeHead(401, {'www-authenticate': `Bearer realm="${realm}",service="registry",scope="repository:team/app:pull"`}).end()
      }
      res.writeHead(200, {'content-type': MediaTypes.ociManifest, 'docker-content-digest': sha256Digest(manifest)}).end(manifest)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const host = `127.0.0.1:${(server.address() as {port: number}).port}`
    const c = createRegistryClient({plainHttp: isLoopbackRegistry, credentials: async () => undefined, retryPolicy: {baseMs: 5, maxMs: 100}})
    try {
      const m = await c.getManifest({registry: host, repository: 'team/app'}, 'v1')
      expect(m.bytes.equals(manifest)).toBe(true)
      expect(tokenRequests).toBe(3)
    } finally {
      await c.close()
      server.close()
    }
  })
})
