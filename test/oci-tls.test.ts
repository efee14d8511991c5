import {mkdtemp, rm} from 'node:fs/promises'
import {lookup} from 'node:dns/promises'
import {hostname, tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {createRegistryClient, type OciClient} from '../src/oci/client.js'
import {sha256Digest} from '../src/oci/digest.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'

const ownName = hostname()
const ownNameIsLoopback = !/^localhost$/i.test(ownName) && (await lookup(ownName).then((r) => /^127\./.test(r.address), () => false))

async function failure(p: Promise<unknown>): Promise<KpiError> {
  const e = await p.then(() => undefined, (err: unknown) => err)
  expect(e).toBeInstanceOf(KpiError)
  return e as KpiError
}

async function pushPull(c: OciClient, registry: string): Promise<void> {
  const repo = {registry, repository: 'tls/app'}
  const bytes = Buffer.from(`blob over TLS ${Math.random()}`)
  const digest = sha256Digest(bytes)
  await c.putBlob(repo, digest, bytes.length, () => Readable.from([bytes]))
  const chunks: Buffer[] = []
  for await (const chunk of await c.getBlob(repo, digest, bytes.length)) chunks.push(chunk as Buffer)
  expect(Buffer.concat(chunks).equals(bytes)).toBe(true)
}

describe('OCI client over TLS', () => {
  let dir: string
  let tls: Registry
  let plain: Registry
  const clients: OciClient[] = []
  const client = (o: Parameters<typeof createRegistryClient>[0] = {}): OciClient => {
    const c = createRegistryClient({credentials: async () => undefined, ...o})
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-oci-tls-'))
    ;[tls, plain] = await Promise.all([
      startRegistry({runDir: dir, name: 'tls', tls: true}),
      startRegistry({runDir: dir, name: 'plain'}),
    ])
  })
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await Promise.all([tls?.stop(), plain?.stop()])
    await rm(dir, {recursive: true, force: true})
  })

  it('refuses a registry whose CA it does not know, with kind tls and a hint', async () => {
    const e = await failure(client().ping(tls.host))
    expect(e.kind).toBe('tls')
    expect(e.message).toMatch(new RegExp(`^TLS certificate of ${tls.host.replace(/\./g, '\\.')} is not trusted \\(.+\\)$`))
    expect(e.hint).toBe('pass --ca-cert FILE with the registry CA, or --insecure-registry HOST to skip verification for this registry only')
  })

  it('trusts the registry with its CA in caCerts, alongside the system CAs', async () => {
    const c = client({caCerts: [tls.caPem!]})
    await c.ping(tls.host)
    await pushPull(c, tls.host)
    // localhost is in the certificate too
    await pushPull(c, `localhost:${tls.host.split(':')[1]}`)
  })

  it('skips verification only when asked', async () => {
    const c = client({insecureSkipTlsVerify: true})
    await pushPull(c, tls.host)
  })

  it('rejects a certificate from another CA even with caCerts', async () => {
    const other = await startRegistry({runDir: dir, name: 'other', tls: true})
    try {
      const e = await failure(client({caCerts: [tls.caPem!]}).ping(other.host))
      expect(e.kind).toBe('tls')
    } finally {
      await other.stop()
    }
  })

  it('talks plain HTTP to a loopback registry that answers it, without being told, and says so once', async () => {
    const told: string[] = []
    const c = client({onPlainHttp: (r) => told.push(r)})
    await pushPull(c, plain.host)
    await pushPull(c, plain.host)
    expect(told).toEqual([plain.host])
    // the same registry by localhost: loopback too
    const port = plain.host.slice(plain.host.lastIndexOf(':') + 1)
    await pushPull(client(), `localhost:${port}`)
    // a loopback registry that speaks TLS is not taken for a plain one
    const viaTls: string[] = []
    await pushPull(client({caCerts: [tls.caPem!], onPlainHttp: (r) => viaTls.push(r)}), tls.host)
    expect(viaTls).toEqual([])
  })

  // this machine's own name, which resolves to loopback but is not a loopback name: stands for a
  // registry elsewhere. Where it does not resolve so, vitest reports the test skipped.
  it.runIf(ownNameIsLoopback)('elsewhere, a registry serving plain HTTP is an error naming --plain-http HOST', async () => {
    const remote = `${ownName}:${plain.host.slice(plain.host.lastIndexOf(':') + 1)}`
    const toPlain = await failure(client().ping(remote))
    expect(toPlain.kind).toBe('tls')
    expect(toPlain.message).toBe(`registry ${remote} serves plain HTTP, not HTTPS`)
    expect(toPlain.hint).toBe(`give it TLS, or talk plain HTTP to it with --plain-http ${remote}`)
    await pushPull(client({plainHttp: (r) => r === remote}), remote)
  })

  it('plain HTTP to a registry that speaks HTTPS is said', async () => {
    const toTls = await failure(client({plainHttp: () => true}).ping(tls.host))
    expect(toTls.kind).toBe('tls')
    expect(toTls.message).toContain('speaks HTTPS')
  })
})
