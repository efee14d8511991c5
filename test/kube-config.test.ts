/**
 * The kubeconfig as kpi reads it itself (src/kube/config.ts): what kubectl does with several files,
 * relative paths, and which users are handed to @kubernetes/client-node (exec, auth providers,
 * proxy-url). Requests through both paths against a real API server are in kube-client.test.ts.
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {delimiter, join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'
import {loadKubeConfig} from '../src/kube/config.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-kubeconfig-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

const file = async (name: string, doc: unknown) => {
  const f = join(dir, name)
  await writeFile(f, stringify(doc))
  return f
}

describe('kubeconfig', () => {
  it('merges $KUBECONFIG files with the first one winning per entry, paths relative to their file', async () => {
    const a = await file('a', {
      'current-context': 'dev',
      clusters: [{name: 'dev', cluster: {server: 'https://dev.example:6443/', 'certificate-authority': 'ca.pem'}}],
      users: [{name: 'alice', user: {token: 'T1'}}],
      contexts: [{name: 'dev', context: {cluster: 'dev', user: 'alice'}}],
    })
    const b = await file('b', {
      'current-context': 'prod',
      clusters: [{name: 'dev', cluster: {server: 'https://other.example'}}, {name: 'prod', cluster: {server: 'https://prod.example', 'insecure-skip-tls-verify': true}}],
      users: [{name: 'bob', user: {'client-certificate': 'sub/bob.crt', 'client-key': '/abs/bob.key'}}],
      contexts: [{name: 'prod', context: {cluster: 'prod', user: 'bob'}}],
    })
    const k = loadKubeConfig({}, {KUBECONFIG: [a, b].join(delimiter)})
    expect(k).toMatchObject({context: 'dev', server: 'https://dev.example:6443', needsLibrary: false})
    expect(k.cluster.caFile).toBe(join(dir, 'ca.pem'))
    expect(k.user.token).toBe('T1')
    const p = loadKubeConfig({context: 'prod'}, {KUBECONFIG: [a, b].join(delimiter)})
    expect(p.cluster).toMatchObject({server: 'https://prod.example', skipTLSVerify: true})
    expect(p.user).toMatchObject({certFile: join(dir, 'sub/bob.crt'), keyFile: '/abs/bob.key'})
  })

  it('hands exec plugins, auth providers and proxies to the library; names a broken file', async () => {
    const base = (user: unknown, cluster: Record<string, unknown> = {}) => ({
      'current-context': 'c', clusters: [{name: 'c', cluster: {server: 'https://c.example', ...cluster}}],
      users: [{name: 'u', user}], contexts: [{name: 'c', context: {cluster: 'c', user: 'u'}}],
    })
    expect(loadKubeConfig({kubeconfig: await file('exec', base({exec: {command: 'aws', apiVersion: 'client.authentication.k8s.io/v1'}}))}).needsLibrary).toBe(true)
    expect(loadKubeConfig({kubeconfig: await file('ap', base({'auth-provider': {name: 'oidc'}}))}).needsLibrary).toBe(true)
    expect(loadKubeConfig({kubeconfig: await file('px', base({token: 'x'}, {'proxy-url': 'http://127.0.0.1:3128'}))}).needsLibrary).toBe(true)
    expect(loadKubeConfig({kubeconfig: await file('basic', base({username: 'u', password: 'p'}))})).toMatchObject({needsLibrary: false, user: {username: 'u', password: 'p'}})
    const bad = await file('bad', {clusters: [{name: 'c', cluster: {}}]})
    expect(() => loadKubeConfig({kubeconfig: bad})).toThrow(/cannot load kubeconfig .*bad: clusters\[0\]\.cluster\.server is missing/)
    const noUser = await file('nouser', {...base({token: 'x'}), users: []})
    expect(() => loadKubeConfig({kubeconfig: noUser})).toThrow(/context c of .* names no user/)
  })

  it('reads the chosen user\'s token-file as kubectl does: relative to its kubeconfig, trimmed, named when unreadable', async () => {
    const {createRequester} = await import('../src/kube/http.js')
    const {createServer} = await import('node:http')
    await writeFile(join(dir, 'echoed-token'), 'abc123\n')
    const doc = (users: unknown[], user = 'u') => ({
      'current-context': 'c', clusters: [{name: 'c', cluster: {server: 'http://127.0.0.1:1'}}],
      users, contexts: [{name: 'c', context: {cluster: 'c', user}}],
    })
    // another user's token-file that cannot be read does not matter
    const k = loadKubeConfig({kubeconfig: await file('tf', doc([{name: 'u', user: {'token-file': 'echoed-token'}}, {name: 'other', user: {'token-file': '/nonexistent/token'}}]))})
    expect(k.user.token).toBe('abc123')
    // the header reaches the server (a token with its newline made every request throw)
    let seen: string | undefined
    const server = createServer((req, res) => {
      seen = req.headers.authorization
      res.setHeader('content-type', 'application/json')
      res.end('{"major":"1"}')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as {port: number}).port
    const r = await createRequester({...k, server: `http://127.0.0.1:${port}`, cluster: {...k.cluster, server: `http://127.0.0.1:${port}`}})
    try {
      await r.request('GET', '/version')
      expect(seen).toBe('Bearer abc123')
    } finally {
      r.close()
      server.close()
    }
    const missing = await file('tf-missing', doc([{name: 'u', user: {'token-file': 'no-such-token'}}]))
    expect(() => loadKubeConfig({kubeconfig: missing})).toThrow(new RegExp(`cannot read the token-file ${join(dir, 'no-such-token')} of user u in --kubeconfig .*: ENOENT`))
    await writeFile(join(dir, 'blank-token'), '\n')
    const blank = await file('tf-blank', doc([{name: 'u', user: {'token-file': 'blank-token'}}]))
    expect(() => loadKubeConfig({kubeconfig: blank})).toThrow(/token-file .*blank-token of user u .* is empty/)
  })

  it('takes certificate-authority-data and client-*-data over the files beside them, as kubectl does', async () => {
    const {createRequester} = await import('../src/kube/http.js')
    const {createServer} = await import('node:http')
    const server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end('{"major":"1"}')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(server.address() as {port: number}).port}`
    const pem = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64')
    // files that are not there (a kubeconfig copied from another machine): the data beside them is what counts
    const k = loadKubeConfig({kubeconfig: await file('data-over-files', {
      'current-context': 'c', clusters: [{name: 'c', cluster: {server: url, 'certificate-authority': 'gone/ca.crt', 'certificate-authority-data': pem}}],
      users: [{name: 'u', user: {token: 't'}}], contexts: [{name: 'c', context: {cluster: 'c', user: 'u'}}],
    })})
    const r = await createRequester(k)
    try {
      await expect(r.request('GET', '/version')).resolves.toMatchObject({status: 200, body: {major: '1'}})
    } finally {
      r.close()
      server.close()
    }
    // a file without data beside it that cannot be read is named
    const noData = {...k, cluster: {...k.cluster, caData: undefined}}
    await expect(createRequester(noData)).rejects.toThrow(`cannot read the certificate-authority file ${join(dir, 'gone/ca.crt')} of the kubeconfig: ENOENT`)
  })
})
