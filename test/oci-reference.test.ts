import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {mergeScopes, parseChallenges} from '../src/oci/auth.js'
import {nextLink, referrersTag} from '../src/oci/index.js'
import {sha256Digest, verifyingStream} from '../src/oci/digest.js'
import {credentialsFor, envCredentials, hasUnscopedEnvCredentials, readDockerConfig, registryKeyHost} from '../src/oci/dockerconfig.js'
import {formatReference, parseReference} from '../src/oci/reference.js'
import {retryAfterMs} from '../src/oci/retry.js'
import {isLoopbackRegistry} from '../src/oci/transport.js'

const D = `sha256:${'a'.repeat(64)}`

describe('image references', () => {
  it.each([
    ['nginx', {registry: 'docker.io', repository: 'library/nginx'}],
    ['nginx:1.25', {registry: 'docker.io', repository: 'library/nginx', tag: '1.25'}],
    ['paketobuildpacks/builder:base', {registry: 'docker.io', repository: 'paketobuildpacks/builder', tag: 'base'}],
    ['index.docker.io/library/ubuntu', {registry: 'docker.io', repository: 'library/ubuntu'}],
    ['localhost/app', {registry: 'localhost', repository: 'app'}],
    ['127.0.0.1:5000/kpack/controller@' + D, {registry: '127.0.0.1:5000', repository: 'kpack/controller', digest: D}],
    ['registry.example/a/b/c:v1@' + D, {registry: 'registry.example', repository: 'a/b/c', tag: 'v1', digest: D}],
    ['[::1]:5000/app:x', {registry: '[::1]:5000', repository: 'app', tag: 'x'}],
    ['Registry.Example:443/app', {registry: 'Registry.Example:443', repository: 'app'}],
    ['reg.example/a__b/c-d--e.f', {registry: 'reg.example', repository: 'a__b/c-d--e.f'}],
  ])('parses %s', (s, want) => {
    expect(parseReference(s)).toEqual(want)
  })

  it.each([
    ['registry.example/App', /must be lowercase/],
    ['registry.example/app@sha256:abc', /not a valid digest/],
    ['registry.example/app@md5:' + 'a'.repeat(32), /not a valid digest/],
    ['registry.example/app:-bad', /not a valid tag/],
    ['registry.example/-app', /not a valid repository name/],
    ['registry.example//app', /not a valid repository name/],
    ['', /empty image reference/],
  ])('rejects %s with an input error naming it', (s, why) => {
    let err: unknown
    try {
      parseReference(s)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(KpiError)
    expect((err as KpiError).kind).toBe('input')
    expect((err as KpiError).message).toMatch(why)
    if (s) expect((err as KpiError).message).toContain(`"${s}"`)
  })

  it('formats a reference fully qualified', () => {
    expect(formatReference(parseReference('nginx:1@' + D))).toBe(`docker.io/library/nginx:1@${D}`)
    expect(referrersTag(D)).toBe(`sha256-${'a'.repeat(64)}`)
  })
})

describe('digest verifier', () => {
  const bytes = Buffer.from('some blob content')
  const run = (d: string, size?: number): Promise<void> =>
    pipeline(Readable.from([bytes.subarray(0, 5), bytes.subarray(5)]), verifyingStream(d, {size}), async (s) => { for await (const _ of s) { /* drain */ } })

  it('passes matching content', async () => {
    await expect(run(sha256Digest(bytes), bytes.length)).resolves.toBeUndefined()
  })
  it('fails with kind integrity on a wrong digest or size, naming the digest', async () => {
    const other = sha256Digest('other')
    await expect(run(other)).rejects.toMatchObject({kind: 'integrity', message: expect.stringContaining(other)})
    await expect(run(sha256Digest(bytes), bytes.length + 1)).rejects.toMatchObject({kind: 'integrity', message: expect.stringMatching(/expected 18/)})
    await expect(run(sha256Digest(bytes), 3)).rejects.toMatchObject({kind: 'integrity', message: expect.stringMatching(/more than the expected 3/)})
  })
})

describe('auth helpers', () => {
  it('parses WWW-Authenticate challenges with quoted and bare params', () => {
    expect(parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual([
      {scheme: 'bearer', params: {realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push'}},
    ])
    expect(parseChallenges(['Basic realm="x, y"', 'Bearer realm=https://t, error=insufficient_scope'])).toEqual([
      {scheme: 'basic', params: {realm: 'x, y'}},
      {scheme: 'bearer', params: {realm: 'https://t', error: 'insufficient_scope'}},
    ])
  })
  it('merges scopes per repository', () => {
    expect(mergeScopes(['repository:b:pull', 'repository:a:push', 'repository:a:pull'])).toEqual(['repository:a:pull,push', 'repository:b:pull'])
  })
  it('reads Retry-After and Link headers', () => {
    expect(retryAfterMs('2', 10_000)).toBe(2000)
    expect(retryAfterMs('120', 10_000)).toBe(10_000)
    expect(retryAfterMs(undefined, 10_000)).toBeUndefined()
    expect(nextLink('</v2/a/tags/list?n=2&last=b>; rel="next"', 'http://r:5000/v2/a/tags/list?n=2')).toBe('http://r:5000/v2/a/tags/list?n=2&last=b')
    expect(nextLink(undefined, 'http://r')).toBeUndefined()
    expect(nextLink('<a>; rel="prev", </v2/b?last=c>;rel=next', 'http://r/')).toBe('http://r/v2/b?last=c')
    expect(nextLink('<a> x <b> ; title="q"; rel="next"', 'http://r/')).toBe('http://r/b')
    expect(nextLink('<a>; rel="nex"', 'http://r/')).toBeUndefined()
  })
  it('reads Link headers as the rule <target>; ... rel=next says, in one pass over a hostile one', () => {
    // the rule as a regex (which backtracks quadratically): the one pass must agree with it
    const byRegex = (link: string): string | undefined => {
      for (const part of link.split(',')) {
        const m = /<([^>]+)>\s*;.*rel="?next"?/.exec(part)
        if (m) return m[1]
      }
      return undefined
    }
    const chars = fc.constantFrom('<', '>', ';', ',', ' ', '\t', 'rel=', 'next', '"', 'rel="next"', 'a', '/b?c=d')
    fc.assert(fc.property(fc.array(chars, {maxLength: 30}).map((a) => a.join('')), (link) => {
      const want = byRegex(link)
      expect(nextLink(link, 'http://r/base/')).toBe(want === undefined ? undefined : new URL(want, 'http://r/base/').toString())
    }), {numRuns: 3000})
    // a registry's hostile header, 1 MiB of it: answered, not backtracked over
    expect(nextLink('<'.repeat(1 << 20), 'http://r/')).toBeUndefined()
    expect(nextLink(`${'<a> ;'.repeat(1 << 18)} rel=next`, 'http://r/')).toBe('http://r/a')
  })
  it('knows loopback registries', () => {
    expect(['localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:5000', 'a.localhost'].every(isLoopbackRegistry)).toBe(true)
    expect(['registry.example', '10.0.0.1:5000', 'localhost.example.com'].some(isLoopbackRegistry)).toBe(false)
  })
})

describe('docker config credentials', () => {
  it('matches registry keys with or without scheme and /v1/, and Docker Hub aliases', () => {
    expect(registryKeyHost('https://index.docker.io/v1/')).toBe('docker.io')
    expect(registryKeyHost('http://127.0.0.1:5000/v2/')).toBe('127.0.0.1:5000')
    expect(registryKeyHost('registry.example')).toBe('registry.example')
  })

  it('reads auths (auth, username/password, identitytoken) and refuses broken JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-dockercfg-'))
    try {
      await writeFile(join(dir, 'config.json'), JSON.stringify({auths: {
        'https://index.docker.io/v1/': {auth: Buffer.from('hub:pa:ss').toString('base64')},
        'reg.example': {identitytoken: 'idt'},
      }}))
      const env = {HOME: dir}
      expect(await credentialsFor('docker.io', {env, configDir: dir})).toMatchObject({username: 'hub', password: 'pa:ss'})
      expect(await credentialsFor('reg.example', {env, configDir: dir})).toMatchObject({identityToken: 'idt'})
      expect(await credentialsFor('other.example', {env, configDir: dir})).toBeUndefined()
      await writeFile(join(dir, 'config.json'), '{"auths": ')
      await expect(readDockerConfig(join(dir, 'config.json'))).rejects.toMatchObject({kind: 'input', message: expect.stringContaining(join(dir, 'config.json'))})
      expect(await readDockerConfig(join(dir, 'missing.json'))).toEqual({})
      // a helper that is not installed is an auth error naming it
      await writeFile(join(dir, 'config.json'), JSON.stringify({credHelpers: {'reg.example': 'kpi-missing'}}))
      await expect(credentialsFor('reg.example', {env: {PATH: dir}, configDir: dir})).rejects.toMatchObject({kind: 'auth', message: expect.stringContaining('docker-credential-kpi-missing')})
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })

  it('scopes KPI_REGISTRY_* to KPI_REGISTRY_HOSTNAME, with suffixed sets', () => {
    const env = {
      KPI_REGISTRY_USERNAME_SRC: 'u1', KPI_REGISTRY_PASSWORD_SRC: 'p1', KPI_REGISTRY_HOSTNAME_SRC: 'src.example',
      KPI_REGISTRY_USERNAME_DST: 'u2', KPI_REGISTRY_PASSWORD_DST: 'p2', KPI_REGISTRY_HOSTNAME_DST: 'https://dst.example:5000/',
    }
    expect(envCredentials('src.example', env)?.username).toBe('u1')
    expect(envCredentials('dst.example:5000', env)?.username).toBe('u2')
    expect(envCredentials('third.example', env)).toBeUndefined()
  })

  it('gives a set without KPI_REGISTRY_HOSTNAME only to the registry the command writes to', () => {
    const unscoped = {KPI_REGISTRY_USERNAME: 'u', KPI_REGISTRY_PASSWORD: 'p'}
    expect(envCredentials('any.example', unscoped)).toBeUndefined()
    expect(envCredentials('public.example', unscoped, 'dst.example:5000')).toBeUndefined()
    expect(envCredentials('dst.example:5000', unscoped, 'dst.example:5000')?.username).toBe('u')
    // a set naming the registry wins over the unscoped one, for the destination too
    const both = {...unscoped, KPI_REGISTRY_USERNAME_D: 'ud', KPI_REGISTRY_PASSWORD_D: 'pd', KPI_REGISTRY_HOSTNAME_D: 'dst.example:5000'}
    expect(envCredentials('dst.example:5000', both, 'dst.example:5000')?.username).toBe('ud')
    expect(hasUnscopedEnvCredentials(unscoped)).toBe(true)
    expect(hasUnscopedEnvCredentials({KPI_REGISTRY_USERNAME_D: 'ud', KPI_REGISTRY_PASSWORD_D: 'pd', KPI_REGISTRY_HOSTNAME_D: 'd'})).toBe(false)
    // a username alone is no set
    expect(hasUnscopedEnvCredentials({KPI_REGISTRY_USERNAME: 'u'})).toBe(false)
  })
})
