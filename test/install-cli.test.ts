/**
 * kpi install and kpi status through the CLI on the sandbox: the sample platform relocated to the
 * air-gapped registry (htpasswd + TLS), installed on a real control plane where KWOK plays the
 * kubelets (pods become Ready, no container code runs, so no kpack controller ever sets Ready:
 * --wait=applied, except where the test itself writes kpack's status through the status subresource;
 * runPods: false keeps kpack's own controller out, test/kpack-real.test.ts runs it).
 * Run `npm run build` first (tsc and the oclif manifest): the CLI runs from dist/.
 */
import {gunzipSync} from 'node:zlib'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {parse, stringify} from 'yaml'
import {afterAll, beforeAll, describe, expect, it, onTestFailed} from 'vitest'
import {loadBundle} from '../src/bundle/load.js'
import type {Bundle} from '../src/bundle/types.js'
import {createKubeClient, type Kube} from '../src/kube/client.js'
import type {LiveObject, ObjectRef} from '../src/kube/types.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {readRevision, saveRevision} from '../src/revision/store.js'
import {issueCert} from '../src/sandbox/pki.js'
import {expectCleanFailure, kpi, startKpi, type CliResult} from './helpers/cli.js'


let sb: Sandbox
let work: string
let env: Record<string, string>
let kube: Kube
let lockFile: string
let lock: Bundle
let valuesFile: string
const outputs: string[] = []

const run = async (args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> => {
  const r = await kpi(args, {...env, ...extraEnv})
  outputs.push(r.stdout, r.stderr)
  return r
}
const installArgs = (...more: string[]) => ['install', '-b', lockFile, '-f', valuesFile, '--ca-cert', sb.caFile, ...more]
let failed = false
// the run dir (registries, etcd) is kept only when a test failed, for its logs
const logsOnFailure = () => onTestFailed(() => {
  failed = true
  console.error(`sandbox run dir: ${sb.runDir} (control plane logs in ${sb.controlPlane?.logsDir})`)
})

const ns = (name: string): ObjectRef => ({apiVersion: 'v1', kind: 'Namespace', name})
const revisionRef: ObjectRef = {apiVersion: 'v1', kind: 'Secret', name: 'kpi.platform.v1', namespace: 'kpi-system'}

async function readRecord(): Promise<{secret: LiveObject; json: string; record: Record<string, any>}> {
  const secret = (await kube.get(revisionRef))!
  const json = gunzipSync(Buffer.from((secret.data as Record<string, string>)['revision.json.gz']!, 'base64')).toString('utf8')
  return {secret, json, record: JSON.parse(json) as Record<string, any>}
}

/** Resolves when `text` appears on the child's stderr. */
function stderrShows(child: ReturnType<typeof startKpi>['child'], text: string): Promise<void> {
  return new Promise((resolve) => {
    let seen = ''
    const on = (d: Buffer) => {
      seen += d.toString()
      if (seen.includes(text)) {
        child.stderr!.off('data', on)
        resolve()
      }
    }
    child.stderr!.on('data', on)
  })
}

const ready = (status: 'True' | 'False', message?: string) => ({
  type: 'Ready', status, lastTransitionTime: new Date().toISOString(), ...(message ? {reason: 'ReconcileFailed', message} : {}),
})

/** Writes kpack's status the way kpack does: the status subresource, for the generation it saw. */
async function setKpackReady(ref: ObjectRef, status: 'True' | 'False', message?: string): Promise<void> {
  const live = (await kube.get(ref))!
  await kube.patchStatus(ref, {observedGeneration: live.metadata.generation, conditions: [ready(status, message)]})
}

describe('kpi install and kpi status on the sandbox', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'kpi-install-'))
    sb = await startSandbox({runDir: join(work, 'sandbox'), controlPlane: true, samples: ['v1'], runPods: false})
    env = {...sb.env, KUBECONFIG: sb.controlPlane!.kubeconfig}
    kube = await createKubeClient({kubeconfig: sb.controlPlane!.kubeconfig})
    lockFile = join(work, 'lock.yaml')
    const r = await run(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', lockFile, '--ca-cert', sb.caFile])
    expect(r.code, r.stderr).toBe(0)
    lock = (await loadBundle(lockFile)).bundle
    const ca = await readFile(sb.caFile, 'utf8')
    valuesFile = join(work, 'values.yaml')
    await writeFile(valuesFile, stringify({
      registry: {server: sb.airgap.host, repository: 'build-service', username: sb.airgap.username, password: sb.airgap.password},
      caCerts: [ca],
      teams: [{name: 'payments', builders: [{name: 'java-only', stack: 'base', store: 'default', order: [{group: [{id: 'example/java'}]}]}]}],
      // the sandbox runs no kpack-webhook: objects must not depend on it answering
      kpack: {webhook: {failurePolicy: 'Ignore'}},
    }))
  })
  afterAll(async () => {
    kube?.close()
    await sb?.stop()
    if (sb && !failed) await rm(work, {recursive: true, force: true})
  })

  it('kpi status before any install, and against a cluster that does not answer, fails in one line', async () => {
    logsOnFailure()
    const none = await run(['status'])
    expect(expectCleanFailure(none)).toBe(`Error: no kpi installation in the cluster at ${sb.controlPlane!.server} (no revision record in namespace kpi-system): install with kpi install -b LOCK -f VALUES`)
    expect(none.code).toBe(7)
    const doc = parse(await readFile(sb.controlPlane!.kubeconfig, 'utf8')) as {clusters: Array<{cluster: {server: string}}>}
    doc.clusters[0]!.cluster.server = 'https://127.0.0.1:9'
    const closed = join(work, 'closed.kubeconfig')
    await writeFile(closed, stringify(doc))
    const down = await run(['status', '--kubeconfig', closed])
    expect(expectCleanFailure(down)).toBe('Error: cannot reach the Kubernetes API at https://127.0.0.1:9 (ECONNREFUSED): check --kubeconfig and --context (or $KUBECONFIG) and that the cluster is running')
    expect(down.code).toBe(6)
    const installDown = await run([...installArgs('--wait=applied'), '--kubeconfig', closed])
    expect(expectCleanFailure(installDown)).toMatch(/^Error: cannot reach the Kubernetes API at https:\/\/127\.0\.0\.1:9/)
  })

  it('preflight stops before anything is applied when an image is missing from the registry, naming it', async () => {
    logsOnFailure()
    const broken = parse(await readFile(lockFile, 'utf8')) as Bundle
    const controller = broken.kpack.images.controller
    broken.kpack.images.controller = controller.replace(/@sha256:[0-9a-f]{64}$/, `@sha256:${'0'.repeat(64)}`)
    const brokenFile = join(work, 'lock-missing.yaml')
    await writeFile(brokenFile, stringify(broken))
    const r = await run(['install', '-b', brokenFile, '-f', valuesFile, '--ca-cert', sb.caFile, '--wait=applied'])
    const line = expectCleanFailure(r)
    expect(r.code).toBe(7)
    expect(line).toContain(`preflight: image ${broken.kpack.images.controller} (used by Deployment kpack/kpack-controller) is not in the registry`)
    expect(await kube.get(ns('kpack'))).toBeUndefined()
    expect(await kube.get(ns('kpi-system'))).toBeUndefined()
  })

  it('preflight checks images with the credentials of the values file, not the user\'s docker config', async () => {
    logsOnFailure()
    const v = parse(await readFile(valuesFile, 'utf8')) as {registry: {password: string}}
    v.registry.password = 'not-the-password'
    const wrong = join(work, 'values-wrong-password.yaml')
    await writeFile(wrong, stringify(v))
    const r = await run(['install', '-b', lockFile, '-f', wrong, '--ca-cert', sb.caFile, '--wait=applied'])
    const line = expectCleanFailure(r)
    expect(r.code).toBe(4)
    expect(line).toMatch(/^Error: preflight: cannot check image .*: registry .* refused the credentials for user "platform": the cluster will pull with the registry credentials of the values file; fix registry\.username\/registry\.password there$/)
    expect(r.stderr + r.stdout).not.toContain('not-the-password')
    expect(await kube.get(ns('kpack'))).toBeUndefined()
  })

  it('preflight refuses a user RBAC does not allow to install, naming the permissions', async () => {
    logsOnFailure()
    const pki = join(sb.controlPlane!.runDir, 'pki')
    const ca = {dir: pki, cert: join(pki, 'ca.crt'), key: join(pki, 'ca.key'), certPem: await readFile(join(pki, 'ca.crt'), 'utf8')}
    const cert = await issueCert(ca, {name: 'intern', commonName: 'intern', usage: 'client'})
    const doc = parse(await readFile(sb.controlPlane!.kubeconfig, 'utf8')) as {users: Array<{user: Record<string, string>}>}
    doc.users[0]!.user = {
      'client-certificate-data': Buffer.from(cert.certPem).toString('base64'),
      'client-key-data': Buffer.from(await readFile(cert.key, 'utf8')).toString('base64'),
    }
    const kc = join(work, 'intern.kubeconfig')
    await writeFile(kc, stringify(doc))
    // the intern may read revisions (so preflight gets as far as permissions), nothing more
    await kube.apply({apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: {name: 'kpi-test-reader'}, rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['get', 'list']}]} as unknown as LiveObject)
    await kube.apply({apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: {name: 'kpi-test-reader'}, roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kpi-test-reader'}, subjects: [{kind: 'User', name: 'intern', apiGroup: 'rbac.authorization.k8s.io'}]} as unknown as LiveObject)
    const r = await run([...installArgs('--wait=applied'), '--kubeconfig', kc])
    const line = expectCleanFailure(r)
    expect(r.code).toBe(4)
    expect(line).toMatch(/^Error: preflight: the user of context kpi-sandbox may not create, patch /)
    expect(line).toContain('customresourcedefinitions.apiextensions.k8s.io (cluster-wide)')
    expect(line).toContain('create, patch serviceaccounts in namespace kpack')
    expect(line).toMatch(/; and \d+ more: install needs cluster-admin/)
    expect(await kube.get(ns('kpack'))).toBeUndefined()
  })

  it('refuses to install over a kpack kpi does not manage, unless --adopt', async () => {
    logsOnFailure()
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: {name: 'images.kpack.io'},
      spec: {group: 'kpack.io', scope: 'Namespaced', names: {kind: 'Image', plural: 'images', singular: 'image', listKind: 'ImageList'},
        versions: [{name: 'v1alpha2', served: true, storage: true, schema: {openAPIV3Schema: {type: 'object', 'x-kubernetes-preserve-unknown-fields': true}}}]},
    } as unknown as LiveObject
    await kube.apply(crd, {fieldManager: 'kubectl'})
    try {
      const r = await run(installArgs('--wait=applied'))
      const line = expectCleanFailure(r)
      expect(r.code).toBe(9)
      expect(line).toBe('Error: preflight: kpack is already installed and kpi does not manage it: CustomResourceDefinition images.kpack.io: pass --adopt to take it over (kpi then owns and changes these objects), or choose another cluster')
      expect(await kube.get(ns('kpack'))).toBeUndefined()
    } finally {
      await kube.delete({apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'images.kpack.io'})
      for (let i = 0; i < 100 && (await kube.get({apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'images.kpack.io'})); i++) {
        await new Promise((res) => setTimeout(res, 200))
      }
    }
  })

  it('an install killed mid-way (SIGKILL once stage 3 started) completes when run again, every stage ready', async () => {
    logsOnFailure()
    const first = startKpi(installArgs('--wait=applied'), env)
    await stderrShows(first.child, 'stage config:')
    first.child.kill('SIGKILL')
    const killed = await first.done
    outputs.push(killed.stdout, killed.stderr)
    expect(killed.signal).toBe('SIGKILL')
    const pending = await readRecord()
    expect(pending.record.status).toBe('pending-install')
    expect(pending.secret.metadata.labels?.['kpi.dev/status']).toBe('pending-install')
    expect(pending.record.stages.find((s: {name: string}) => s.name === 'crds').status).toBe('ready')

    const again = await run(installArgs('--wait=applied'))
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/^Installed build-service 1\.0\.0 \(kpack 0\.16\.1\) as revision 1 \(resumed\) in /)
    expect(again.stderr).toContain('existing installation: done (revision 1 (pending-install): resuming it)')
    for (const stage of ['preflight', 'crds', 'config', 'controllers', 'platform', 'builders', 'teams']) {
      expect(again.stderr, stage).toMatch(new RegExp(`^stage ${stage} done`, 'm'))
    }
    expect(again.stderr).toContain('Deployment kpack/kpack-controller rolled out: done (1/1 replicas available)')
    expect(again.stderr).toContain('Deployment kpack/kpack-webhook rolled out: done (1/1 replicas available)')
    expect(again.stderr).toContain('Service kpack/kpack-webhook has ready endpoints: done')
    expect(again.stderr).toContain('CustomResourceDefinition clusterbuilders.kpack.io established: done')
    expect(again.stderr).toContain('kpack webhooks use failurePolicy Ignore')
    expect(again.stdout).toContain('kpack readiness NOT checked (--wait=applied): ClusterStack base, ClusterStore default, ClusterBuilder base, Builder payments/java-only')
    expect((await readRecord()).record.status).toBe('deployed')
  })

  it('kpi status is healthy, the controller runs the relocated digests, and the revision record holds no credentials', async () => {
    logsOnFailure()
    const r = await run(['status'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^build-service 1\.0\.0 \(kpack 0\.16\.1\): revision 1, deployed \(install\)/)
    // kpack's controller and webhook, and cert-injection-webhook (the sample ships its images)
    expect(r.stdout).toMatch(/controllers +healthy +10\/10 present, 3\/3 Deployments available, 2\/2 Services with ready endpoints/)
    expect(r.stdout).toMatch(/crds +healthy +11\/11 present, 9\/9 CRDs established/)
    expect(r.stdout).toMatch(/ClusterBuilder base: unknown: no Ready condition/)
    expect(r.stdout.trim().split('\n').at(-1)).toBe('healthy (kpack readiness unknown for 4 resources)')
    const j = await run(['status', '--json'])
    const doc = JSON.parse(j.stdout) as {ok: boolean; healthy: boolean; revision: number; stages: Array<{name: string; health: string}>; kpack: {unknown: number}}
    expect(j.code).toBe(0)
    expect(doc.healthy).toBe(true)
    expect(doc.stages.map((s) => s.name)).toEqual(['crds', 'config', 'controllers', 'platform', 'builders', 'teams'])
    expect(doc.kpack.unknown).toBe(4)

    const deployment = (await kube.get({apiVersion: 'apps/v1', kind: 'Deployment', name: 'kpack-controller', namespace: 'kpack'}))!
    const containers = (deployment.spec as {template: {spec: {containers: Array<{image: string}>}}}).template.spec.containers
    expect(containers[0]!.image).toBe(lock.kpack.images.controller)
    expect(containers[0]!.image.startsWith(`${sb.airgapPrefix}/`)).toBe(true)
    const webhook = (await kube.get({apiVersion: 'apps/v1', kind: 'Deployment', name: 'kpack-webhook', namespace: 'kpack'}))!
    expect((webhook.spec as {template: {spec: {containers: Array<{image: string}>}}}).template.spec.containers[0]!.image).toBe(lock.kpack.images.webhook)

    const {secret, json, record} = await readRecord()
    expect(secret.type).toBe('kpi.dev/revision')
    expect(secret.metadata.labels).toMatchObject({'kpi.dev/name': 'build-service', 'kpi.dev/version': '1.0.0', 'kpi.dev/revision': '1', 'kpi.dev/status': 'deployed'})
    expect(record).toMatchObject({apiVersion: 'kpi.dev/v1alpha1', kind: 'Revision', revision: 1, operation: 'install', status: 'deployed', wait: 'applied', kpackVersion: '0.16.1'})
    expect(record.lock.kpack.images.controller).toBe(lock.kpack.images.controller)
    expect(record.values.registry).toEqual({server: sb.airgap.host, repository: 'build-service', username: sb.airgap.username})
    expect(record.redactedFields).toEqual(['registry.password'])
    expect(record.stages.map((s: {status: string}) => s.status)).toEqual(['ready', 'ready', 'ready', 'ready', 'ready', 'ready'])
    const regSecret = record.objects.find((o: {object: LiveObject}) => o.object.kind === 'Secret' && o.object.metadata.name === 'kp-default-repository-secret')
    expect(regSecret.object.data).toEqual({'.dockerconfigjson': '<redacted>'})
    expect(json).not.toContain(sb.airgap.password!)
    expect(json).not.toContain(Buffer.from(`${sb.airgap.username}:${sb.airgap.password}`).toString('base64'))
    for (const o of outputs) expect(o).not.toContain(sb.airgap.password!)
  })

  it('a second install with the same inputs changes nothing and says so', async () => {
    logsOnFailure()
    const before = (await readRecord()).secret.metadata.resourceVersion
    const r = await run(installArgs('--wait=applied', '--json'))
    expect(r.code, r.stderr).toBe(0)
    const doc = JSON.parse(r.stdout) as {ok: boolean; mode: string; objects: {total: number; created: number; changed: number; unchanged: number}; changedObjects: unknown[]}
    expect(doc.mode).toBe('reconcile')
    expect(doc.objects.changed + doc.objects.created).toBe(0)
    expect(doc.objects.unchanged).toBe(doc.objects.total)
    expect(doc.changedObjects).toEqual([])
    const text = await run(installArgs('--wait=applied'))
    expect(text.stdout).toMatch(/^build-service 1\.0\.0 is installed with these inputs \(revision 1\): 0 objects changed \(\d+ unchanged\)/)
    // nothing written, not even the record
    expect((await readRecord()).secret.metadata.resourceVersion).toBe(before)
  })

  it('with --wait=ready, a builder kpack marks Ready=False fails the install with kpack\'s message', async () => {
    logsOnFailure()
    const p = startKpi(installArgs('--wait=ready', '--timeout', '60s'), env)
    // kpack accepts the stack and the store while install waits for them...
    await stderrShows(p.child, 'ClusterStack base Ready: start')
    await setKpackReady({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', name: 'base'}, 'True')
    await setKpackReady({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStore', name: 'default'}, 'True')
    // ...and refuses the builder
    await stderrShows(p.child, 'ClusterBuilder base Ready: start')
    await setKpackReady({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterBuilder', name: 'base'}, 'False', 'buildpack example/java@1.2.0 is not in store default')
    const r = await p.done
    outputs.push(r.stdout, r.stderr)
    const line = expectCleanFailure(r)
    expect(r.code).toBe(11)
    expect(line).toMatch(/^Error: stage builders: ClusterBuilder base is not ready: kpack says: buildpack example\/java@1\.2\.0 is not in store default: see kubectl get clusterbuilder base -o yaml/)
    expect(r.stderr).toContain('stage platform done')
    expect(r.stderr).not.toContain('stage teams:')
  })

  it('kpi status then reports the platform unhealthy, naming the builder and kpack\'s message', async () => {
    logsOnFailure()
    const r = await run(['status'])
    expect(r.code).toBe(11)
    expect(r.stdout).toMatch(/builders +unhealthy +1\/1 present, 0\/1 kpack resources Ready/)
    expect(r.stdout).toContain('ClusterBuilder base: failed: buildpack example/java@1.2.0 is not in store default')
    expect(r.stdout).toMatch(/platform +healthy +2\/2 present, 2\/2 kpack resources Ready/)
    expect(r.stdout.trim().split('\n').at(-1)).toBe('NOT healthy')
  })

  it('kpack objects of kpi without a revision record are refused, and taken over with --adopt', async () => {
    logsOnFailure()
    expect(await kube.delete(revisionRef)).toBe(true)
    const refused = await run(installArgs('--wait=applied'))
    expect(expectCleanFailure(refused)).toContain('Deployment kpack/kpack-controller (kpi\'s, but no revision record in kpi-system): pass --adopt')
    expect(refused.code).toBe(9)
    const adopted = await run(installArgs('--wait=applied', '--adopt'))
    expect(adopted.code, adopted.stderr).toBe(0)
    expect(adopted.stdout).toMatch(/^Installed build-service 1\.0\.0 \(kpack 0\.16\.1\) as revision 1 \(adopted\)/)
    expect((await readRecord()).record.status).toBe('deployed')
  })

  it('with --wait=ready, install succeeds once kpack marks every kpack resource Ready, and kpi status says healthy with them Ready', async () => {
    logsOnFailure()
    const kinds = ['ClusterStack', 'ClusterStore', 'ClusterBuilder', 'Builder', 'ClusterLifecycle']
    // whatever earlier tests left (a Ready=False builder, statuses of another generation): start from no status at all
    for (const kind of kinds) {
      if (!(await kube.get({apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: `${kind.toLowerCase()}s.kpack.io`}))) continue
      for (const o of await kube.list('kpack.io/v1alpha2', kind)) {
        await kube.patchStatus({apiVersion: 'kpack.io/v1alpha2', kind, name: o.metadata.name, namespace: o.metadata.namespace}, {observedGeneration: null, conditions: null})
      }
    }
    const p = startKpi(installArgs('--wait=ready', '--timeout', '60s'), env)
    // play kpack: each resource install starts waiting for is marked Ready (for the generation install applied)
    const marked: string[] = []
    const marking: Array<Promise<void>> = []
    let seen = ''
    const waitLine = new RegExp(`^ {2}(${kinds.join('|')}) (?:([^/\\s]+)/)?(\\S+) Ready: start$`, 'gm')
    p.child.stderr!.on('data', (d: Buffer) => {
      seen += d.toString()
      for (const m of seen.matchAll(waitLine)) {
        const [, kind, namespace, name] = m
        const what = `${kind} ${namespace ? `${namespace}/` : ''}${name}`
        if (marked.includes(what)) continue
        marked.push(what)
        marking.push(setKpackReady({apiVersion: 'kpack.io/v1alpha2', kind: kind!, name: name!, ...(namespace ? {namespace} : {})}, 'True'))
      }
    })
    const r = await p.done
    outputs.push(r.stdout, r.stderr)
    await Promise.all(marking)
    expect(r.code, r.stderr).toBe(0)
    expect(marked).toEqual(expect.arrayContaining(['ClusterStack base', 'ClusterStore default', 'ClusterBuilder base', 'Builder payments/java-only']))
    for (const what of marked) expect(r.stderr, what).toContain(`  ${what} Ready: done`)
    expect(r.stdout).not.toContain('kpack readiness NOT checked')
    expect(r.stderr).toMatch(/^stage teams done/m)

    const st = await run(['status'])
    expect(st.code, st.stdout + st.stderr).toBe(0)
    expect(st.stdout).toMatch(/builders +healthy +1\/1 present, 1\/1 kpack resources Ready/)
    expect(st.stdout).toMatch(/platform +healthy +2\/2 present, 2\/2 kpack resources Ready/)
    expect(st.stdout).not.toContain('unknown')
    expect(st.stdout.trim().split('\n').at(-1)).toBe('healthy')
    const j = JSON.parse((await run(['status', '--json'])).stdout) as {healthy: boolean; verdict: string; kpack: {ready: number; notReady: number; unknown: number}}
    expect(j).toMatchObject({healthy: true, verdict: 'healthy', kpack: {ready: marked.length, notReady: 0, unknown: 0}})
  })

  it('an install resumed with other inputs deletes what the attempt before applied and these lack', async () => {
    logsOnFailure()
    // the record an install leaves that failed after applying a ConfigMap its inputs had and these lack
    const stored = (await readRevision(kube, 1))!
    const leftover = {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'kpi-leftover', namespace: 'kpack', labels: {'app.kubernetes.io/managed-by': 'kpi'}}, data: {from: 'the attempt before'}}
    await kube.apply(leftover)
    const stage = stored.record.objects.find((o) => o.object.kind === 'ConfigMap')!.stage
    await saveRevision(kube, stored, {...stored.record, status: 'failed', objects: [...stored.record.objects, {stage, object: leftover}]})
    const r = await run(installArgs('--wait=applied'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^Installed build-service 1\.0\.0 \(kpack 0\.16\.1\) as revision 1 \(resumed\) in /)
    expect(await kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-leftover', namespace: 'kpack'})).toBeUndefined()
    const after = (await readRevision(kube, 1))!.record
    expect(after.status).toBe('deployed')
    expect(after.objects.some((o) => o.object.metadata.name === 'kpi-leftover')).toBe(false)
  })
})
