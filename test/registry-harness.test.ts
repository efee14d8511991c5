import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {connect} from 'node:tls'
import {Agent, request} from 'undici'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {processCpuSeconds} from '../bench/lib/measure.js'
import {startGgcrRegistry, type GgcrRegistry} from '../src/sandbox/ggcr-registry.js'
import {startRegistry, type Registry} from '../src/sandbox/registry.js'

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`

async function status(url: string, headers: Record<string, string> = {}, dispatcher?: Agent): Promise<number> {
  const res = await request(url, {headers, dispatcher})
  await res.body.dump()
  return res.statusCode
}

describe('sandbox registry harness', () => {
  let dir: string
  const started: Array<Registry | GgcrRegistry> = []
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-reg-harness-'))
  })
  afterAll(async () => {
    await Promise.all(started.map((r) => r.stop()))
    await rm(dir, {recursive: true, force: true})
  })

  it('serves a plain registry on loopback that survives a restart', async () => {
    const reg = await startRegistry({runDir: dir, name: 'plain'})
    started.push(reg)
    expect(reg.host).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(reg.url).toBe(`http://${reg.host}`)
    expect(await status(`${reg.url}/v2/`)).toBe(200)
    // a blob pushed before a restart is still there after it (filesystem storage under runDir)
    const up = await request(`${reg.url}/v2/a/blobs/uploads/`, {method: 'POST'})
    await up.body.dump()
    expect(up.statusCode).toBe(202)
    const loc = new URL(String(up.headers.location), reg.url)
    const digest = 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824' // "hello"
    loc.searchParams.set('digest', digest)
    const put = await request(loc, {method: 'PUT', body: 'hello', headers: {'content-type': 'application/octet-stream'}})
    await put.body.dump()
    expect(put.statusCode).toBe(201)
    await reg.restart()
    const res = await request(`${reg.url}/v2/a/blobs/${digest}`)
    expect(await res.body.text()).toBe('hello')
    expect(await readFile(reg.logFile, 'utf8')).toContain('listening on 127.0.0.1')
  })

  it('names the process serving it, whose CPU the benchmark reads from /proc', async () => {
    const reg = await startRegistry({runDir: join(dir, 'pid'), name: 'counted'})
    started.push(reg)
    const first = reg.pid()
    expect(first).toBeGreaterThan(0)
    expect(await readFile(`/proc/${first}/cmdline`, 'utf8')).toContain(join(dir, 'pid', 'counted.config.yml'))
    const before = (await processCpuSeconds(first))!
    expect(before).toBeGreaterThanOrEqual(0)
    // work the registry does for us shows in its counter: 200 uploads opened and answered
    for (let i = 0; i < 200; i++) await (await request(`${reg.url}/v2/a/blobs/uploads/`, {method: 'POST'})).body.dump()
    expect((await processCpuSeconds(first))!).toBeGreaterThan(before)
    await reg.restart()
    expect(reg.pid()).toBeGreaterThan(0)
    expect(reg.pid()).not.toBe(first)
    expect(await processCpuSeconds(first)).toBeUndefined()
    await reg.stop()
    expect(reg.pid()).toBeUndefined()
  })

  it('checks htpasswd credentials: right password 200, wrong or none 401', async () => {
    const reg = await startRegistry({runDir: dir, name: 'auth', auth: {username: 'alice', password: 's3cret-pw'}})
    started.push(reg)
    expect(reg.username).toBe('alice')
    expect(await status(`${reg.url}/v2/`)).toBe(401)
    expect(await status(`${reg.url}/v2/`, {authorization: basic('alice', 's3cret-pw')})).toBe(200)
    expect(await status(`${reg.url}/v2/`, {authorization: basic('alice', 'wrong')})).toBe(401)
    const res = await request(`${reg.url}/v2/`)
    await res.body.dump()
    expect(String(res.headers['www-authenticate'])).toMatch(/^Basic realm=/)
    // the htpasswd file holds a bcrypt hash, not the password
    const file = await readFile(join(dir, 'auth.htpasswd'), 'utf8')
    expect(file).toMatch(/^alice:\$2y\$/)
    expect(file).not.toContain('s3cret-pw')
  })

  it('serves TLS that verifies against the harness CA and fails without it', async () => {
    const reg = await startRegistry({runDir: dir, name: 'tls', tls: true})
    started.push(reg)
    expect(reg.url).toBe(`https://${reg.host}`)
    expect(reg.caPem).toContain('BEGIN CERTIFICATE')
    const trusted = new Agent({connect: {ca: reg.caPem}})
    expect(await status(`${reg.url}/v2/`, {}, trusted)).toBe(200)
    expect(await status(`https://localhost:${reg.host.split(':')[1]}/v2/`, {}, trusted)).toBe(200)
    await trusted.close()
    const untrusted = new Agent()
    await expect(status(`${reg.url}/v2/`, {}, untrusted)).rejects.toMatchObject({code: expect.stringMatching(/CERT|SIGNATURE|ISSUER/)})
    await untrusted.close()
  })

  it("serves another registry's storage over TLS: a blob pushed over plain HTTP is read over HTTPS", async () => {
    const plain = await startRegistry({runDir: join(dir, 'shared'), name: 'plain-origin'})
    started.push(plain)
    const up = await request(`${plain.url}/v2/a/blobs/uploads/`, {method: 'POST'})
    await up.body.dump()
    const loc = new URL(String(up.headers.location), plain.url)
    const digest = 'sha256:486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7' // "world"
    loc.searchParams.set('digest', digest)
    await (await request(loc, {method: 'PUT', body: 'world', headers: {'content-type': 'application/octet-stream'}})).body.dump()
    const secure = await startRegistry({runDir: join(dir, 'shared'), name: 'tls-mirror', tls: true, dataDir: plain.dataDir})
    started.push(secure)
    expect(secure.url).toBe(`https://${secure.host}`)
    const trusted = new Agent({connect: {ca: secure.caPem}})
    const res = await request(`${secure.url}/v2/a/blobs/${digest}`, {dispatcher: trusted})
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe('world')
    await trusted.close()
  })

  it('serves the ggcr registry over TLS with HTTP/1.1 only: its uploads hang over HTTP/2, which Go peers would pick', async () => {
    const reg = await startGgcrRegistry({runDir: dir, name: 'ggcr-tls', tls: true})
    started.push(reg)
    const port = Number(reg.host.split(':')[1])
    const socket = connect({host: '127.0.0.1', port, servername: 'localhost', ca: reg.caPem, ALPNProtocols: ['h2', 'http/1.1']})
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
    const protocol = socket.alpnProtocol
    socket.destroy()
    expect(protocol).toBe('http/1.1')
    const trusted = new Agent({connect: {ca: reg.caPem}})
    expect(await status(`${reg.url}/v2/`, {}, trusted)).toBe(200)
    await trusted.close()
  })
})
