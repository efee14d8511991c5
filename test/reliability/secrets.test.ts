/**
 * Secrets: one canary password (the air-gapped registry's, and the values file's) used through
 * relocation (registry to registry, into an archive and out of it), render, install, status, an
 * upgrade from v1 to v2 and a rollback to v1, history, plus failures that involve the credential.
 * Every byte kpi wrote is scanned for the canary, plainly and base64-encoded at any alignment:
 * stdout, stderr, --json events, locks, archives, the rendered output outside Secret data, every
 * revision record (install, upgrade, rollback) decoded, the other objects in the cluster (outside
 * Secret data), error messages.
 */
import {mkdtemp, readFile, readdir, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {gunzipSync} from 'node:zlib'
import {parse, parseAllDocuments, stringify} from 'yaml'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createKubeClient, type Kube} from '../../src/kube/client.js'
import type {LiveObject} from '../../src/kube/types.js'
import {startSandbox, type Sandbox} from '../../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi, type CliResult} from '../helpers/cli.js'
import {faultInjected, leaksFound} from './ledger.js'

const CANARY = 'kpiCanary7Qz9Xw3Rt5Lm'
const USER = 'platform'

/** The canary's base64 forms at the three byte alignments, each cut to the characters it alone decides. */
export function base64Forms(secret: string): string[] {
  const bytes = Buffer.from(secret)
  return [0, 1, 2].map((k) => {
    const enc = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64')
    const start = [0, 2, 3][k]!
    return enc.slice(start, Math.floor((k + bytes.length) / 3) * 4)
  })
}

const needles = [CANARY, ...base64Forms(CANARY), ...base64Forms(`${USER}:${CANARY}`)]

interface Leak {
  where: string
  form: string
}

/** Every canary form found in `bytes`, named by `where`. */
function scan(where: string, bytes: Buffer | string): Leak[] {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes
  return needles.filter((n) => b.includes(n)).map((form) => ({where, form: form === CANARY ? 'plain' : `base64 ${form}`}))
}

/** Rendered YAML or JSON objects with the data of every Secret removed: only Secret data may hold it. */
function outsideSecretData(objects: unknown[]): string {
  return JSON.stringify(objects.map((o) => {
    const obj = o as {kind?: string; data?: unknown; stringData?: unknown}
    if (obj?.kind !== 'Secret') return obj
    const {data: _d, stringData: _s, ...rest} = obj
    return rest
  }))
}

let work: string
let sb: Sandbox
let kube: Kube
let env: Record<string, string>
let lock: string
let values: string
const leaks: Leak[] = []
const runs: Array<{args: string[]; r: CliResult}> = []

const run = async (args: string[], extra: Record<string, string> = {}): Promise<CliResult> => {
  const r = await kpi(args, {...env, ...extra})
  runs.push({args, r})
  leaks.push(...scan(`kpi ${args.join(' ')}: stdout`, r.stdout), ...scan(`kpi ${args.join(' ')}: stderr`, r.stderr))
  return r
}
const ok = (r: CliResult) => expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
/** a status report: healthy (0) or not (11), never an error */
const reported = (r: CliResult) => expect([0, 11], `${r.stdout}\n${r.stderr}`).toContain(r.code)

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-secrets-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), controlPlane: true, samples: ['v1', 'v2'], username: USER, password: CANARY})
  env = {...sb.env, KUBECONFIG: sb.controlPlane!.kubeconfig}
  kube = await createKubeClient({kubeconfig: sb.controlPlane!.kubeconfig})
  lock = join(work, 'out', 'lock.yaml')
  values = join(work, 'values.yaml')
  await writeFile(values, stringify({
    registry: {server: sb.airgap.host, repository: 'build-service', username: USER, password: CANARY},
    caCerts: [await readFile(sb.caFile, 'utf8')],
    kpack: {webhook: {failurePolicy: 'Ignore'}},
  }))
})

afterAll(async () => {
  kube?.close()
  await sb?.stop()
})

describe('one canary password through relocate, archive, render, install, upgrade, rollback', () => {
  it('appears in no byte kpi wrote, plain or base64, outside Secret data', async () => {
    const out = join(work, 'out')
    await import('node:fs/promises').then((fs) => fs.mkdir(out, {recursive: true}))
    const ca = ['--ca-cert', sb.caFile]
    // relocation with the canary as the destination's password, human and --json
    ok(await run(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', lock, ...ca]))
    ok(await run(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/json`, '--lock-output', join(out, 'lock-json.yaml'), '--json', ...ca]))
    // into an archive from the air-gapped registry (the canary as the source's password), and out of it
    ok(await run(['relocate', '-b', lock, '--to-tar', join(out, 'platform.tar'), ...ca]))
    ok(await run(['relocate', '-b', lock, '--to-tar', join(out, 'split.tar'), '--split', '1MiB', '--json', ...ca]))
    ok(await run(['tar', 'inspect', join(out, 'platform.tar')]))
    ok(await run(['tar', 'verify', join(out, 'platform.tar'), '--json']))
    ok(await run(['relocate', '--from-tar', join(out, 'platform.tar'), '--to-repo', `${sb.airgap.host}/from-tar`, '--lock-output', join(out, 'lock-tar.yaml'), '--json', ...ca]))
    // render: the canary is in Secret data, and only there
    for (const json of [false, true]) {
      const r = await kpi(['render', '-b', lock, '-f', values, ...(json ? ['--json'] : [])], env)
      ok(r)
      // --json wraps each object with its stage: {stage, object}
      const objects = json ? (JSON.parse(r.stdout) as {objects: Array<{object: unknown}>}).objects.map((o) => o.object) : parseAllDocuments(r.stdout).map((d) => d.toJS())
      expect(scan('render (whole)', r.stdout).length, 'the rendered Secret carries the credential').toBeGreaterThan(0)
      leaks.push(...scan(`render${json ? ' --json' : ''} outside Secret data`, outsideSecretData(objects)), ...scan('render stderr', r.stderr))
    }
    // install and status, human and --json
    ok(await run(['install', '-b', lock, '-f', values, '--wait=applied', '--timeout', '3m', ...ca]))
    // right after an install with --wait=applied kpack may not have judged yet: status then says NOT
    // healthy (exit 11); either way its output is scanned
    reported(await run(['status']))
    reported(await run(['status', '--json']))
    // v1 -> v2 and back: upgrade, rollback (--json events), history (human and --json), status again
    const lock2 = join(out, 'lock-v2.yaml')
    ok(await run(['relocate', '-b', sb.bundles.v2!, '--to-repo', sb.airgapPrefix, '--lock-output', lock2, ...ca]))
    ok(await run(['upgrade', '-b', lock2, '-f', values, '--wait=applied', ...ca]))
    ok(await run(['rollback', '--wait=applied', '--json']))
    ok(await run(['history']))
    ok(await run(['history', '--json']))
    reported(await run(['status', '--json']))

    // failures that involve the credential: refused passwords, a values file with a mistake next to it
    expectCleanFailure(await run(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/wrong-user`, '--lock-output', join(out, 'x.yaml'), ...ca],
      {DOCKER_CONFIG: join(work, 'no-docker'), KPI_REGISTRY_USERNAME: 'someone-else', KPI_REGISTRY_PASSWORD: CANARY}))
    const badValues = join(work, 'values-bad.yaml')
    await writeFile(badValues, stringify({registry: {server: sb.airgap.host, repository: 7, username: USER, password: CANARY, passwrd: CANARY}}))
    expectCleanFailure(await run(['render', '-b', lock, '-f', badValues]))
    const wrongUser = join(work, 'values-wrong-user.yaml')
    await writeFile(wrongUser, stringify({registry: {server: sb.airgap.host, repository: 'build-service', username: 'nobody', password: CANARY}, caCerts: [await readFile(sb.caFile, 'utf8')]}))
    expectCleanFailure(await run(['install', '-b', lock, '-f', wrongUser, '--wait=applied', ...ca]))
    expectCleanFailure(await run(['upgrade', '-b', lock2, '-f', wrongUser, '--wait=applied', ...ca]))
    expectCleanFailure(await run(['upgrade', '-b', lock2, '-f', badValues, '--wait=applied', ...ca]))

    // every file kpi wrote: locks, archives (every part)
    for (const f of await readdir(out)) {
      const p = join(out, f)
      if ((await stat(p)).isFile()) leaks.push(...scan(`file ${f}`, await readFile(p)))
    }

    // the cluster: revision records decoded, every other object outside Secret data
    const records = await kube.list('v1', 'Secret', {namespace: 'kpi-system'})
    // install, upgrade, rollback: every revision record was scanned
    expect(records.filter((r) => /^kpi\.platform\.v\d+$/.test(r.metadata.name)).map((r) => r.metadata.name).sort()).toEqual(['kpi.platform.v1', 'kpi.platform.v2', 'kpi.platform.v3'])
    for (const s of records) {
      for (const [k, v] of Object.entries((s.data ?? {}) as Record<string, string>)) {
        const raw = Buffer.from(v, 'base64')
        const text = k.endsWith('.gz') ? gunzipSync(raw) : raw
        leaks.push(...scan(`Secret kpi-system/${s.metadata.name} ${k}`, text))
      }
    }
    const kinds: Array<[string, string]> = [['v1', 'ConfigMap'], ['v1', 'Secret'], ['v1', 'ServiceAccount'], ['apps/v1', 'Deployment'], ['v1', 'Namespace']]
    for (const [apiVersion, kind] of kinds) {
      const objects: LiveObject[] = await kube.list(apiVersion, kind)
      leaks.push(...scan(`cluster ${kind} objects outside Secret data`, outsideSecretData(objects)))
    }

    leaksFound('secrets canary', leaks.length)
    expect(runs.length).toBeGreaterThan(10)
    expect(leaks, leaks.map((l) => `${l.where}: ${l.form}`).join('\n')).toEqual([])
  }, 600_000)
})

describe('TLS to the Kubernetes API', () => {
  const variant = async (name: string, edit: (cluster: Record<string, unknown>) => void): Promise<string> => {
    const doc = parse(await readFile(sb.controlPlane!.kubeconfig, 'utf8')) as {clusters: Array<{cluster: Record<string, unknown>}>}
    edit(doc.clusters[0]!.cluster)
    const file = join(work, `${name}.kubeconfig`)
    await writeFile(file, stringify(doc))
    return file
  }

  it('is verified by default: an API server whose CA the kubeconfig does not carry is refused in one line', async () => {
    const ledger = faultInjected('tls untrusted kubernetes API')
    const other = Buffer.from(await readFile(sb.caFile)).toString('base64')
    const file = await variant('wrong-ca', (c) => (c['certificate-authority-data'] = other))
    const r = await kpi(['status', '--kubeconfig', file], env)
    expect(expectCleanFailure(r)).toMatch(/cannot verify the TLS certificate of the Kubernetes API at https:\/\/127\.0\.0\.1/)
    expect(r.code).toBe(5)
    ledger.survived()
  })

  it('insecure-skip-tls-verify in the kubeconfig works, with a warning on every run', async () => {
    const file = await variant('insecure', (c) => {
      delete c['certificate-authority-data']
      c['insecure-skip-tls-verify'] = true
    })
    for (let i = 0; i < 2; i++) {
      const r = await kpi(['status', '--kubeconfig', file], env)
      expect(r.stderr.split('\n').filter((l) => l.startsWith('Warning:'))).toEqual([
        `Warning: the TLS certificate of the Kubernetes API at ${sb.controlPlane!.server} is not verified (insecure-skip-tls-verify in the kubeconfig): anyone on the network path can impersonate it`,
      ])
      expect(r.stderr).not.toMatch(/^Error: cannot verify the TLS certificate/m)
      // it reached the API server and reported the platform (0: ready, 11: not ready)
      reported(r)
    }
  })
})
