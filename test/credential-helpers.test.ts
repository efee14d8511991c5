/**
 * Docker credential helpers through the CLI, against the sandbox's air-gapped registry (htpasswd +
 * TLS): a real helper program on PATH that speaks the docker-credential-helpers protocol (get,
 * store, erase, list over stdin/stdout, backed by a file) supplies the credentials through
 * `credHelpers` and through `credsStore`; a failing or missing helper is one line naming it. And
 * the public registry (plain HTTP on loopback) is used without --plain-http, said once.
 */
import {execFile} from 'node:child_process'
import {chmod, mkdir, mkdtemp, readFile, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi} from './helpers/cli.js'

let sb: Sandbox
let work: string
let bin: string
let store: string
let calls: string

/** A credential helper as docker's are: one program, the operation as its argument, JSON over stdin/stdout. */
const helperSource = (storeFile: string, log: string) => `#!/usr/bin/env node
const fs = require('fs')
const op = process.argv[2]
let input = ''
process.stdin.on('data', (d) => { input += d })
process.stdin.on('end', () => {
  const all = fs.existsSync(${JSON.stringify(storeFile)}) ? JSON.parse(fs.readFileSync(${JSON.stringify(storeFile)}, 'utf8')) : {}
  const save = () => fs.writeFileSync(${JSON.stringify(storeFile)}, JSON.stringify(all))
  const server = input.trim()
  fs.appendFileSync(${JSON.stringify(log)}, op + ' ' + (op === 'store' ? JSON.parse(input).ServerURL : server) + '\\n')
  if (op === 'get') {
    const c = all[server]
    if (!c) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1) }
    process.stdout.write(JSON.stringify({ServerURL: server, Username: c.Username, Secret: c.Secret}) + '\\n')
  } else if (op === 'store') {
    const c = JSON.parse(input)
    all[c.ServerURL] = {Username: c.Username, Secret: c.Secret}
    save()
  } else if (op === 'erase') {
    delete all[server]
    save()
  } else if (op === 'list') {
    process.stdout.write(JSON.stringify(Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.Username]))) + '\\n')
  } else {
    process.stderr.write('unknown operation ' + op + '\\n')
    process.exit(1)
  }
})
`

const helper = async (op: string, input: string): Promise<string> => {
  const child = promisify(execFile)(join(bin, 'docker-credential-kpifile'), [op])
  child.child.stdin!.end(input)
  return (await child).stdout
}

async function dockerConfig(name: string, cfg: unknown): Promise<string> {
  const dir = join(work, name)
  await mkdir(dir, {recursive: true})
  await writeFile(join(dir, 'config.json'), JSON.stringify(cfg))
  return dir
}

const relocateTo = (prefix: string, configDir: string, extraEnv: Record<string, string> = {}) => kpi(
  ['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/${prefix}`, '--lock-output', join(work, `${prefix}.lock.yaml`), '--ca-cert', sb.caFile],
  {...sb.env, DOCKER_CONFIG: configDir, PATH: `${bin}:${process.env.PATH}`, ...extraEnv},
)

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-credhelpers-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']})
  bin = join(work, 'bin')
  await mkdir(bin)
  store = join(work, 'helper-store.json')
  calls = join(work, 'helper-calls.log')
  await writeFile(join(bin, 'docker-credential-kpifile'), helperSource(store, calls))
  // the helper is CommonJS whatever package.json a directory above TMPDIR holds ("type": "module"
  // in /tmp made node load it as an ES module once)
  await writeFile(join(bin, 'package.json'), '{"type": "commonjs"}\n')
  await writeFile(join(bin, 'docker-credential-broken'), '#!/bin/sh\necho "the keychain is locked" >&2\nexit 1\n')
  await chmod(join(bin, 'docker-credential-kpifile'), 0o755)
  await chmod(join(bin, 'docker-credential-broken'), 0o755)
  // the user logs in through the helper, as docker login does
  await helper('store', JSON.stringify({ServerURL: sb.airgap.host, Username: sb.airgap.username, Secret: sb.airgap.password}))
  expect(JSON.parse(await helper('list', ''))).toEqual({[sb.airgap.host]: sb.airgap.username})
})

afterAll(async () => {
  await sb?.stop()
})

describe('docker credential helpers', () => {
  it('credHelpers: the helper named for the registry supplies the credentials; the secret is never printed', async () => {
    const cfg = await dockerConfig('helpers', {credHelpers: {[sb.airgap.host]: 'kpifile'}})
    const r = await relocateTo('via-credhelpers', cfg)
    expect(r.code, r.stderr).toBe(0)
    expect((await readFile(calls, 'utf8')).split('\n')).toContain(`get ${sb.airgap.host}`)
    expect(r.stdout + r.stderr).not.toContain(sb.airgap.password!)
  })

  it('credsStore: the default helper supplies them when nothing else names the registry', async () => {
    const cfg = await dockerConfig('store', {credsStore: 'kpifile'})
    const r = await relocateTo('via-credsstore', cfg)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout + r.stderr).not.toContain(sb.airgap.password!)
  })

  it('after erase the helper has nothing: the registry refuses the anonymous push, in one line naming it', async () => {
    await helper('erase', sb.airgap.host)
    try {
      const cfg = await dockerConfig('store-erased', {credsStore: 'kpifile'})
      const r = await relocateTo('after-erase', cfg)
      expect(expectCleanFailure(r)).toContain(sb.airgap.host)
      expect(r.code).toBe(4)
    } finally {
      await helper('store', JSON.stringify({ServerURL: sb.airgap.host, Username: sb.airgap.username, Secret: sb.airgap.password}))
    }
  })

  it('a failing helper and a missing helper: one line naming the helper and the registry', async () => {
    const broken = await relocateTo('broken', await dockerConfig('broken', {credHelpers: {[sb.airgap.host]: 'broken'}}))
    expect(expectCleanFailure(broken)).toBe(`Error: docker credential helper docker-credential-broken failed for ${sb.airgap.host}: the keychain is locked: run the helper by hand or docker login again`)
    expect(broken.code).toBe(4)
    const missing = await relocateTo('missing', await dockerConfig('missing', {credsStore: 'nosuchhelper'}))
    expect(expectCleanFailure(missing)).toBe(`Error: docker credential helper docker-credential-nosuchhelper (configured for ${sb.airgap.host}) is not on PATH: install the helper or remove it from credHelpers/credsStore in the docker config`)
  })
})

describe('loopback registries over plain HTTP', () => {
  it('reads the public registry (plain HTTP on 127.0.0.1) without --plain-http, and says so once', async () => {
    const {KPI_PLAIN_HTTP: _, ...env} = sb.env
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-tar', join(work, 'plain.tar')], env)
    expect(r.code, r.stderr).toBe(0)
    const notes = r.stderr.split('\n').filter((l) => l.startsWith('note: '))
    expect(notes).toEqual([`note: registry ${sb.public.host} answers plain HTTP; it is on this machine (loopback), so kpi talks HTTP to it`])
  })
})
