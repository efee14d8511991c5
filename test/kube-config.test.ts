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
})
