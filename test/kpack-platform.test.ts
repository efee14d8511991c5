/**
 * The whole platform really runs (issue "The platform really runs"): v2 (kpack 0.17.2) relocated to
 * the air-gapped registry and installed with --wait=ready, the default; kpack's own controller makes
 * the lifecycle, stack, store and builder Ready and pushes the builder image it assembles to the
 * air-gapped registry (a team's Builder with the team's own registry account, to its repository);
 * the real kp works on what kpi installed; an Image created with kp in a team
 * namespace makes kpack create a Build whose pod carries the CA and the proxy as the real
 * cert-injection-webhook injects them (KWOK plays the build pod: only its spec matters); an upgrade
 * that turns on kpack's injected-sidecar support and priority classes (values kpack.features)
 * changes the next Build's pod as kpack's controller shapes it, and kpack patches that pod.
 * Run `npm run build` first (the CLI runs from dist/).
 */
import {execFile} from 'node:child_process'
import {X509Certificate} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {parse, stringify} from 'yaml'
import {describe, expect, it} from 'vitest'
import type {Bundle} from '../src/bundle/types.js'
import type {LiveObject} from '../src/kube/types.js'
import {waitFor} from '../src/sandbox/procs.js'
import {makeCA} from '../src/sandbox/pki.js'
import {sandboxValues} from '../src/sandbox/sandbox-files.js'
import {toolPath} from '../src/sandbox/tools.js'
import {usePlatformSandbox} from './helpers/platform.js'
import {kpi} from './helpers/cli.js'
import {refRepo, sandboxClients} from './helpers/images.js'
import {parseReference} from '../src/oci/reference.js'
import {latestRevision} from '../src/revision/store.js'

const TEAM = 'team-a'
// the team's own account on the air-gapped registry (teams[].registry), beside the platform's
const TEAM_REPO = `teams/${TEAM}`
const p = usePlatformSandbox('platform', {samples: ['v2'], runPods: true, teams: [TEAM]})
const run = promisify(execFile)
const PROXY = 'http://proxy.kpi.test:3128'

let lock: Bundle
let lockFile: string
let valuesFile: string

const condition = (o: LiveObject | undefined, type: string) =>
  (o?.status as {conditions?: Array<{type: string; status: string; message?: string}>} | undefined)?.conditions?.find((c) => c.type === type)

describe('the platform really runs', () => {
  it('installs v2 with --wait=ready: kpack makes everything Ready and pushes the builder image to the air-gapped registry', async () => {
    p.nameRunDir()
    expect(p.sb.bundle.v2!.certInjection, 'the v2 sample names cert-injection-webhook\'s images').toBeDefined()
    lockFile = join(p.work, 'lock.yaml')
    const r = await kpi(['relocate', '-b', p.sb.bundles.v2!, '--to-repo', p.sb.airgapPrefix, '--lock-output', lockFile, '--ca-cert', p.sb.caFile], p.env)
    expect(r.code, r.stderr).toBe(0)
    lock = parse(await readFile(lockFile, 'utf8')) as Bundle
    const values = parse(await sandboxValues(p.sb, [TEAM])) as Record<string, unknown>
    values.proxy = {httpsProxy: PROXY, httpProxy: PROXY}
    // a proxy needs the service CIDR (the sandbox's: its pods reach the apiserver at 127.0.0.1 instead)
    values.cluster = {serviceCIDR: '10.96.0.0/16'}
    // a team Builder too: kpack must make it Ready like the cluster-wide ones
    const stack = lock.stacks[0]!.name
    const store = lock.stores[0]!.name
    // its password from a file beside the values, as a user keeps it
    const TEAM_USER = p.sb.teamAccounts[TEAM]!
    await writeFile(join(p.work, 'team-a.txt'), `${TEAM_USER.password}\n`, {mode: 0o600})
    values.teams = [{
      name: TEAM,
      registry: {repository: TEAM_REPO, username: TEAM_USER.username, passwordFile: 'team-a.txt'},
      builders: [{name: 'team-builder', stack, store, order: lock.builders[0]!.order}],
    }]
    valuesFile = join(p.work, 'values.yaml')
    await writeFile(valuesFile, stringify(values), {mode: 0o600})
    const install = await kpi(['install', '-b', lockFile, '-f', valuesFile, '--ca-cert', p.sb.caFile], p.env)
    expect(install.code, install.stderr + install.stdout).toBe(0)

    const kinds = ['ClusterLifecycle', 'ClusterStack', 'ClusterStore', 'ClusterBuilder']
    for (const kind of kinds) {
      const all = await p.kube.list('kpack.io/v1alpha2', kind)
      expect(all.length, kind).toBeGreaterThan(0)
      for (const o of all) expect(condition(o, 'Ready')?.status, `${kind} ${o.metadata.name}: ${condition(o, 'Ready')?.message}`).toBe('True')
    }
    const teamBuilders = await p.kube.list('kpack.io/v1alpha2', 'Builder', {namespace: TEAM})
    expect(teamBuilders.map((b) => b.metadata.name)).toContain('team-builder')
    for (const b of teamBuilders) expect(condition(b, 'Ready')?.status, `Builder ${b.metadata.name}: ${condition(b, 'Ready')?.message}`).toBe('True')
    // the team's own account, not the platform's, in its namespace; kpack pushed its Builder with
    // it, to the team's repository (the registry says who pushed)
    const teamSecret = (await p.kube.get({apiVersion: 'v1', kind: 'Secret', name: 'kpi-registry-credentials', namespace: TEAM}))!
    const teamAuths = JSON.parse(Buffer.from((teamSecret.data as Record<string, string>)['.dockerconfigjson']!, 'base64').toString()) as {auths: Record<string, {username: string; password: string}>}
    expect(teamAuths.auths[p.sb.airgap.host]).toMatchObject({username: TEAM_USER.username, password: TEAM_USER.password})
    expect(JSON.stringify(teamAuths)).not.toContain(p.sb.airgap.password!)
    const teamBuilder = teamBuilders.find((b) => b.metadata.name === 'team-builder')!
    expect((teamBuilder.spec as {tag: string}).tag).toBe(`${p.sb.airgap.host}/${TEAM_REPO}/builders/team-builder`)
    const teamLatest = parseReference((teamBuilder.status as {latestImage: string}).latestImage)
    expect(teamLatest.repository).toBe(`${TEAM_REPO}/builders/team-builder`)
    // distribution names the user on the lines of requests that answered an error (kpack's HEADs
    // for blobs the team's repository did not have yet): every one there is the team's account
    const users = (await readFile(p.sb.airgap.logFile, 'utf8')).split('\n')
      .filter((l) => new RegExp(`http\\.request\\.uri="?/v2/${TEAM_REPO}/`).test(l))
      .flatMap((l) => /auth\.user\.name=("[^"]*"|\S+)/.exec(l)?.[1]?.replace(/"/g, '') ?? [])
    expect(users.length, "requests to the team's repository with a user in the registry log").toBeGreaterThan(0)
    expect(new Set(users)).toEqual(new Set([TEAM_USER.username]))
    // and no record keeps the team's password
    const record = (await latestRevision(p.kube))!.record
    expect(record.redactedFields).toContain('teams[0].registry.password')
    expect(JSON.stringify(record)).not.toContain(TEAM_USER.password)
    // the builder image kpack assembled sits in the air-gapped registry at the builder's tag
    const {dst} = await sandboxClients(p.sb)
    try {
      for (const cb of await p.kube.list('kpack.io/v1alpha2', 'ClusterBuilder')) {
        const tag = parseReference((cb.spec as {tag: string}).tag)
        // kpack pushes to the builder's tag (kpack 0.17 adds a tag of its own when spec.tag has none)
        const latest = parseReference((cb.status as {latestImage: string}).latestImage)
        expect(`${latest.registry}/${latest.repository}`).toBe(`${tag.registry}/${tag.repository}`)
        const pushed = await dst.headManifest(refRepo(`${tag.registry}/${tag.repository}`), latest.tag ?? tag.tag ?? 'latest')
        expect(pushed?.digest, `${cb.metadata.name}: the builder image at its tag`).toBe(latest.digest)
      }
    } finally {
      await dst.close()
    }
  })

  it('the real kp works on what kpi installed', async () => {
    p.nameRunDir()
    const kp = toolPath('kp')
    const builder = lock.builders.find((b) => !b.namespace)!.name
    const status = await run(kp, ['clusterbuilder', 'status', builder], {env: {...process.env, ...p.env}})
    expect(status.stdout).toMatch(/Status:\s+Ready/)
    const stacks = await run(kp, ['clusterstack', 'list'], {env: {...process.env, ...p.env}})
    for (const s of lock.stacks) expect(stacks.stdout).toContain(s.name)
  })

  it('an Image made with kp in a team namespace gets a Build whose pod carries the CA and proxy cert-injection-webhook injects', async () => {
    p.nameRunDir()
    const kp = toolPath('kp')
    const builder = lock.builders.find((b) => !b.namespace)!.name
    // a blob source is not fetched by kpack's controller (only by the build pod, which KWOK plays)
    await run(kp, ['image', 'create', 'app', '-n', TEAM, '--tag', `${p.sb.airgapPrefix}/apps/app`, '--blob', 'http://127.0.0.1:9/app.tgz',
      '--cluster-builder', builder, '--service-account', 'kpi-builds'], {env: {...process.env, ...p.env}})
    const podName = await waitFor(async () => {
      const builds = await p.kube.list('kpack.io/v1alpha2', 'Build', {namespace: TEAM})
      return (builds[0]?.status as {podName?: string} | undefined)?.podName
    }, {what: 'kpack to create a Build with a pod', timeoutMs: 90_000})
    const pod = (await p.kube.get({apiVersion: 'v1', kind: 'Pod', name: podName, namespace: TEAM})) as unknown as {
      spec: {initContainers: Array<{name: string; image: string; env?: Array<{name: string; value?: string}>}>; containers: Array<{env?: Array<{name: string; value?: string}>}>}
    }
    const setup = pod.spec.initContainers[0]!
    expect(setup.name).toBe('setup-ca-certs')
    expect(setup.image).toBe(lock.certInjection!.setupCaCerts)
    const ca = (await readFile(p.sb.caFile, 'utf8')).trim()
    expect(setup.env?.find((e) => e.name === 'CA_CERTS_DATA_0')?.value?.trim()).toBe(ca)
    for (const c of [...pod.spec.initContainers.slice(1), ...pod.spec.containers]) {
      const e = new Map((c.env ?? []).map((x) => [x.name, x.value]))
      expect(e.get('HTTPS_PROXY')).toBe(PROXY)
      expect(e.get('https_proxy')).toBe(PROXY)
      expect(e.get('NO_PROXY')).toContain('127.0.0.1')
    }
  })
  // one upgrade, one Build for two changes: each would otherwise cost the file another rollout
  it('kpi upgrade with one more CA rolls cert-injection-webhook, which reads it at start: the next Build pod carries it; kpack\'s injected-sidecar support and priority classes, turned on in the values, shape that pod', async () => {
    p.nameRunDir()
    const rotated = await makeCA(join(p.work, 'rotated-ca'), 'rotated CA')
    const values = parse(await readFile(valuesFile, 'utf8')) as {caCerts: string[]; kpack?: Record<string, unknown>}
    values.caCerts = [...values.caCerts, rotated.certPem]
    values.kpack = {...values.kpack, features: {injectedSidecarSupport: true, priorityClasses: true}}
    const rotatedValues = join(p.work, 'values-rotated.yaml')
    await writeFile(rotatedValues, stringify(values), {mode: 0o600})
    const up = await kpi(['upgrade', '-b', lockFile, '-f', rotatedValues, '--ca-cert', p.sb.caFile], p.env)
    expect(up.code, up.stderr + up.stdout).toBe(0)

    const kp = toolPath('kp')
    const builder = lock.builders.find((b) => !b.namespace)!.name
    await run(kp, ['image', 'create', 'app-rotated', '-n', TEAM, '--tag', `${p.sb.airgapPrefix}/apps/app-rotated`, '--blob', 'http://127.0.0.1:9/app.tgz',
      '--cluster-builder', builder, '--service-account', 'kpi-builds'], {env: {...process.env, ...p.env}})
    const build = await waitFor(async () => {
      const builds = await p.kube.list('kpack.io/v1alpha2', 'Build', {namespace: TEAM})
      const b = builds.find((x) => x.metadata.labels?.['image.kpack.io/image'] === 'app-rotated')
      return (b?.status as {podName?: string} | undefined)?.podName ? b : undefined
    }, {what: 'kpack to create a Build with a pod for app-rotated', timeoutMs: 90_000})
    const podName = (build.status as {podName: string}).podName
    type Pod = {
      metadata: {annotations?: Record<string, string>}
      spec: {priorityClassName?: string; initContainers: Array<{name: string; env?: Array<{name: string; value?: string}>}>; containers: Array<{name: string}>}
    }
    const pod = (await p.kube.get({apiVersion: 'v1', kind: 'Pod', name: podName, namespace: TEAM})) as unknown as Pod
    // priority classes: a build a user asked for (a new Image) is high priority, and the
    // apiserver admitted its pod, so the class kpi renders exists
    expect((build.spec as {priorityClassName?: string}).priorityClassName).toBe('kpack-build-high-priority')
    expect(pod.spec.priorityClassName).toBe('kpack-build-high-priority')
    // injected sidecars: kpack's build steps run as containers that wait their turn, behind one
    // init container that copies the waiter in (plus the one cert-injection-webhook adds)
    expect(pod.spec.initContainers.map((c) => c.name).filter((n) => n !== 'setup-ca-certs')).toEqual(['pre-start'])
    expect(pod.spec.containers.map((c) => c.name)).toEqual(expect.arrayContaining(['prepare', 'detect', 'build', 'export', 'completion']))
    // once every container is ready (KWOK marks them so) kpack's controller patches the pod to
    // start the first step: the patch permission kpi's controller role grants
    await waitFor(async () => {
      const live = (await p.kube.get({apiVersion: 'v1', kind: 'Pod', name: podName, namespace: TEAM})) as unknown as Pod
      return live.metadata.annotations?.['build.kpack.io/ready'] === 'true'
    }, {what: 'kpack to mark the build pod ready for its first step', timeoutMs: 60_000})
    const setup = pod.spec.initContainers.find((c) => c.name === 'setup-ca-certs')!
    const injected = (setup.env ?? []).filter((e) => e.name.startsWith('CA_CERTS_DATA')).map((e) => e.value ?? '').join('\n')
    const fingerprints = (injected.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem).fingerprint256)
    expect(fingerprints).toContain(new X509Certificate(rotated.certPem).fingerprint256)
    expect(fingerprints).toContain(new X509Certificate(await readFile(p.sb.caFile)).fingerprint256)
  })
})
