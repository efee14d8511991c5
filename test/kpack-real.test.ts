/**
 * kpack really runs on the sandbox: the pod runner runs kpack's own controller and webhook (built
 * from the sources of the version the sample's images stand for) for the pods KWOK plays, with the
 * ServiceAccount tokens kpi's RBAC grants. Nothing here writes kpack's status: kpack does.
 * Run `npm run build` first (the CLI runs from dist/).
 */
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it, onTestFailed} from 'vitest'
import {createKubeClient, type Kube} from '../src/kube/client.js'
import type {LiveObject} from '../src/kube/types.js'
import {waitFor} from '../src/sandbox/procs.js'
import {sandboxValues} from '../src/sandbox/sandbox-files.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {parse, stringify} from 'yaml'
import type {Bundle} from '../src/bundle/types.js'
import {expectCleanFailure, kpi, type CliResult} from './helpers/cli.js'
import {sandboxClients} from './helpers/images.js'
import {restackedImage} from './helpers/restack.js'

let sb: Sandbox
let work: string
let env: Record<string, string>
let kube: Kube
let lockFile: string
let valuesFile: string
let failed = false
const logsOnFailure = () => onTestFailed(() => {
  failed = true
  console.error(`sandbox run dir: ${sb.runDir} (pod logs in ${sb.controlPlane?.runDir}/logs/pods)`)
})
const run = (args: string[]): Promise<CliResult> => kpi(args, env)
const installArgs = (...more: string[]) => ['install', '-b', lockFile, '-f', valuesFile, '--ca-cert', sb.caFile, ...more]

/** The `error` fields of kpack's JSON log lines, from the process for the pod whose name starts with `prefix`. */
async function podLogErrors(prefix: string): Promise<string[]> {
  const p = sb.controlPlane!.podRunner!.running().find((r) => r.name.startsWith(prefix))
  if (!p) throw new Error(`no running process for ${prefix}: ${JSON.stringify(sb.controlPlane!.podRunner!.running())}`)
  return (await readFile(p.logFile, 'utf8')).split('\n').flatMap((l) => {
    try {
      const e = (JSON.parse(l) as {error?: string}).error
      return e ? [e] : []
    } catch {
      return []
    }
  })
}

const clusterStack = (name: string, spec: Record<string, unknown>): LiveObject => ({
  apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', metadata: {name}, spec,
})

describe('kpack runs for real on the sandbox', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'kpi-kpack-'))
    sb = await startSandbox({runDir: join(work, 'sandbox'), controlPlane: true, samples: ['v1']})
    expect(sb.missingPrograms, 'kpack binaries (bash scripts/tools.sh)').toEqual([])
    env = {...sb.env, KUBECONFIG: sb.controlPlane!.kubeconfig}
    kube = await createKubeClient({kubeconfig: sb.controlPlane!.kubeconfig})
    lockFile = join(work, 'lock.yaml')
    const r = await run(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', lockFile, '--ca-cert', sb.caFile])
    expect(r.code, r.stderr).toBe(0)
    valuesFile = join(work, 'values.yaml')
    await writeFile(valuesFile, await sandboxValues(sb, ['team-a']), {mode: 0o600})
  })
  afterAll(async () => {
    kube?.close()
    await sb?.stop()
    if (sb && !failed) await rm(work, {recursive: true, force: true})
  })

  it('installs with --wait=ready (kpack 0.16.1 judging), kpack\'s webhook filling in its own configurations', async () => {
    logsOnFailure()
    const r = await run(installArgs())
    expect(r.code, r.stderr + r.stdout).toBe(0)
    // kpack ships its webhook configurations without rules or CA: its webhook writes them
    const validating = await waitFor(async () => {
      const v = await kube.get({apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration', name: 'validation.webhook.kpack.io'})
      const w = (v?.webhooks as Array<{rules?: unknown[]; clientConfig: {caBundle?: string}; failurePolicy: string}> | undefined)?.[0]
      return w?.rules?.length && w.clientConfig.caBundle ? w : undefined
    }, {what: 'kpack-webhook to fill in validation.webhook.kpack.io', timeoutMs: 60_000})
    expect(validating.failurePolicy).toBe('Fail')
    // kpi's config-logging gives kpack's log format (zap's level names), not knative's defaults ("INFO")
    const p = sb.controlPlane!.podRunner!.running().find((r) => r.name.startsWith('kpack/kpack-controller'))!
    const levels = new Set((await readFile(p.logFile, 'utf8')).split('\n').flatMap((l) => {
      try {
        const e = JSON.parse(l) as {level?: string; logger?: string}
        return e.logger === 'controller' && e.level ? [e.level] : []
      } catch {
        return []
      }
    }))
    expect([...levels].filter((l) => !['debug', 'info', 'warn', 'error'].includes(l)), 'log levels in kpack\'s format').toEqual([])
    expect(levels.has('info')).toBe(true)
    for (const ref of [
      {apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', name: 'base'},
      {apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStore', name: 'default'},
      {apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterBuilder', name: 'base'},
    ]) {
      const ready = await waitFor(async () => {
        const o = await kube.get(ref)
        const c = (o?.status as {conditions?: Array<{type: string; status: string}>} | undefined)?.conditions?.find((x) => x.type === 'Ready')
        return c?.status === 'True' ? c : undefined
      }, {what: `${ref.kind} ${ref.name} Ready by kpack`, timeoutMs: 90_000})
      expect(ready.status).toBe('True')
    }
  })

  it('every kind kpack serves lists as v1alpha1, and its objects (the cluster-scoped ones kpi installed at least) read as v1alpha1: converted by kpack\'s webhook, or the same object', async () => {
    logsOnFailure()
    for (const kind of ['ClusterStack', 'ClusterStore', 'ClusterBuilder', 'Builder', 'Image', 'Build', 'SourceResolver']) {
      // the webhook's CA reaches the CRDs it converts a moment after it starts
      const items = await waitFor(() => kube.list('kpack.io/v1alpha1', kind), {what: `a list of kpack.io/v1alpha1 ${kind}`, timeoutMs: 30_000})
      if (kind.startsWith('Cluster')) expect(items.length, kind).toBeGreaterThan(0)
      for (const o of items) expect(o.apiVersion, `${kind} ${o.metadata.name}`).toBe('kpack.io/v1alpha1')
    }
  })

  it('the kpack namespace enforces the restricted Pod Security level, as kpack ships it: kpack\'s pods run, a privileged one is refused', async () => {
    logsOnFailure()
    const privileged: LiveObject = {apiVersion: 'v1', kind: 'Pod', metadata: {name: 'privileged', namespace: 'kpack'}, spec: {
      containers: [{name: 'c', image: 'registry.invalid/x@sha256:' + 'a'.repeat(64), securityContext: {privileged: true}}],
    }}
    const err = await kube.apply(privileged).then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message).toMatch(/violates PodSecurity "restricted:v1\.25"/)
    const pods = await kube.list('v1', 'Pod', {namespace: 'kpack'})
    expect(pods.map((p) => p.metadata.name).filter((n) => /^kpack-(controller|webhook)-/.test(n))).toHaveLength(2)
  })

  it('kpack\'s webhook refuses a ClusterStack kpack\'s validation rejects', async () => {
    logsOnFailure()
    // kpack's CRDs take any object (x-kubernetes-preserve-unknown-fields): only kpack's code can refuse it
    const bad = clusterStack('bad-run-image', {id: 'io.buildpacks.stacks.jammy', buildImage: {image: `${sb.airgapPrefix}/stacks/build:x`}, runImage: {image: 'Stacks/Run:1'}})
    const err = await kube.apply(bad).then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message).toMatch(/admission webhook "validation\.webhook\.kpack\.io" denied the request: validation failed: invalid value: Stacks\/Run:1: spec\.runImage\.image/)
    expect(await kube.get({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', name: 'bad-run-image'})).toBeUndefined()
  })

  it('kpack works with exactly kpi\'s RBAC: without update on kpack.io it fails with its own forbidden error', async () => {
    logsOnFailure()
    const ref = {apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', name: 'kpack-controller-admin'}
    const role = (await kube.get(ref))!
    const original = structuredClone(role.rules) as Array<{apiGroups: string[]; verbs: string[]}>
    const rules = structuredClone(original)
    const kpackRule = rules.find((r) => r.apiGroups.includes('kpack.io'))!
    kpackRule.verbs = kpackRule.verbs.filter((v) => v !== 'update')
    await kube.replace({...role, rules})
    try {
      const base = (await kube.get({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', name: 'base'}))!
      await kube.apply(clusterStack('probe', base.spec as Record<string, unknown>))
      const forbidden = 'clusterstacks.kpack.io "probe" is forbidden: User "system:serviceaccount:kpack:controller" cannot update resource "clusterstacks/status" in API group "kpack.io" at the cluster scope'
      await waitFor(async () => (await podLogErrors('kpack/kpack-controller-')).includes(forbidden), {
        what: 'kpack-controller to log its forbidden error', timeoutMs: 60_000,
      })
      const probe = await kube.get({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', name: 'probe'})
      expect(probe?.status).toBeUndefined()
    } finally {
      const now = (await kube.get(ref))!
      await kube.replace({...now, rules: original})
    }
  })
})

describe('kpack judges the stacks kpi installs', () => {
  let sb2: Sandbox
  let dir: string
  let failed2 = false
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-kpack-stack-'))
    sb2 = await startSandbox({runDir: join(dir, 'sandbox'), controlPlane: true, samples: ['v1']})
    expect(sb2.missingPrograms, 'kpack binaries (bash scripts/tools.sh)').toEqual([])
  })
  afterAll(async () => {
    await sb2?.stop()
    if (sb2 && !failed2) await rm(dir, {recursive: true, force: true})
  })

  it('a run image of another stack id makes kpi install --wait=ready fail, naming the ClusterStack and kpack\'s message', async () => {
    onTestFailed(() => {
      failed2 = true
      console.error(`sandbox run dir: ${sb2.runDir}`)
    })
    const env2 = {...sb2.env, KUBECONFIG: sb2.controlPlane!.kubeconfig}
    const lock2 = join(dir, 'lock.yaml')
    const r = await kpi(['relocate', '-b', sb2.bundles.v1!, '--to-repo', sb2.airgapPrefix, '--lock-output', lock2, '--ca-cert', sb2.caFile], env2)
    expect(r.code, r.stderr).toBe(0)
    const lock = parse(await readFile(lock2, 'utf8')) as Bundle
    const {dst} = await sandboxClients(sb2)
    try {
      lock.stacks[0]!.runImage = await restackedImage(dst, lock.stacks[0]!.runImage, 'io.example.stacks.other')
    } finally {
      await dst.close()
    }
    await writeFile(lock2, stringify(lock))
    const values2 = join(dir, 'values.yaml')
    await writeFile(values2, await sandboxValues(sb2), {mode: 0o600})
    const res = await kpi(['install', '-b', lock2, '-f', values2, '--ca-cert', sb2.caFile, '--timeout', '120s'], env2)
    const line = expectCleanFailure(res)
    expect(line).toContain(`ClusterStack ${lock.stacks[0]!.name}`)
    expect(line).toContain(`invalid stack images. expected stack: ${lock.stacks[0]!.id}, build image stack: ${lock.stacks[0]!.id}, run image stack: io.example.stacks.other`)
  })
})
