/**
 * The pure parts of upgrades: field-level differences (Secret data masked), which objects a new
 * revision deletes and which it keeps, kpack's rebuild/rebase rules, records split in parts, the
 * lease's expiry rule and what `kpi status` says of an operation that died.
 */
import {describe, expect, it} from 'vitest'
import {staleObjects} from '../src/apply/changeset.js'
import {platformRegistrySecret} from '../src/apply/rollback-action.js'
import {planStages} from '../src/apply/plan.js'
import {renderPlatform} from '../src/render/render.js'
import {diffFields, formatFieldChange, MASKED} from '../src/apply/fielddiff.js'
import {identifier, judgeImpact, type FutureBuilder} from '../src/apply/kpack-impact.js'
import {operationState} from '../src/apply/status.js'
import {versionPolicy} from '../src/apply/upgrade-checks.js'
import {KpiError} from '../src/errors.js'
import type {LiveObject} from '../src/kube/types.js'
import {leaseState} from '../src/revision/lease.js'
import {decodeRecord, revisionSecrets, type RevisionRecord} from '../src/revision/record.js'
import type {RenderedObject} from '../src/render/types.js'
import {lock17, values} from './fixtures/render/helpers.js'

const live = (o: Record<string, unknown>) => o as unknown as LiveObject
const noTask = () => {}

describe('field-level differences', () => {
  it('name each changed, added and removed field; leave out status and server bookkeeping; never show Secret data', () => {
    const a = live({apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'd', resourceVersion: '1', generation: 1, labels: {v: '1'}}, spec: {replicas: 1, template: {spec: {containers: [{name: 'c', image: 'x@sha256:a'}]}}}, status: {replicas: 1}})
    const b = live({apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'd', resourceVersion: '2', generation: 2, labels: {v: '2', new: 'y'}}, spec: {template: {spec: {containers: [{name: 'c', image: 'x@sha256:b'}]}}}, status: {replicas: 2}})
    const f = diffFields(a, b)
    expect(f).toEqual([
      {path: 'metadata.labels.v', before: '1', after: '2'},
      {path: 'metadata.labels.new', after: 'y'},
      {path: 'spec.replicas', before: 1},
      {path: 'spec.template.spec.containers[name=c].image', before: 'x@sha256:a', after: 'x@sha256:b'},
    ])
    expect(f.map(formatFieldChange)).toEqual(['metadata.labels.v: 1 -> 2', 'metadata.labels.new: added y', 'spec.replicas: removed (was 1)', 'spec.template.spec.containers[name=c].image: x@sha256:a -> x@sha256:b'])
    const s1 = live({apiVersion: 'v1', kind: 'Secret', metadata: {name: 's'}, data: {'.dockerconfigjson': 'c2VjcmV0MQ=='}})
    const s2 = live({apiVersion: 'v1', kind: 'Secret', metadata: {name: 's'}, data: {'.dockerconfigjson': 'c2VjcmV0Mg==', extra: 'eA=='}})
    const sf = diffFields(s1, s2)
    expect(sf).toEqual([{path: 'data.".dockerconfigjson"', before: MASKED, after: MASKED}, {path: 'data.extra', after: MASKED}])
    expect(JSON.stringify(sf)).not.toContain('c2VjcmV0')
    expect(formatFieldChange(sf[0]!)).toBe('data.".dockerconfigjson": changed')
    expect(diffFields(a, structuredClone(a))).toEqual([])
  })

  it('compare lists of named items (env, containers, volumes) by name: one variable inserted is one change, and the path names it', () => {
    const env = (...e: Array<[string, string]>) => e.map(([name, value]) => ({name, value}))
    const deploy = (e: Array<{name: string; value: string}>, args: string[] = ['--a']) =>
      live({apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'd'}, spec: {template: {spec: {containers: [{name: 'controller', args, env: e}]}}}})
    const before = deploy(env(['INJECTED_SIDECAR_SUPPORT', 'false'], ['CONFIG_LOGGING_NAME', 'config-logging'], ['METRICS_DOMAIN', 'kpack.io']))
    // a flag turned on, one variable inserted in the middle, one removed
    const after = deploy(env(['INJECTED_SIDECAR_SUPPORT', 'true'], ['GIT_RESOLVER_USE_SHALLOW_CLONE', 'true'], ['CONFIG_LOGGING_NAME', 'config-logging']))
    const env0 = 'spec.template.spec.containers[name=controller].env'
    expect(diffFields(before, after).map(formatFieldChange)).toEqual([
      `${env0}[name=INJECTED_SIDECAR_SUPPORT].value: false -> true`,
      `${env0}[name=GIT_RESOLVER_USE_SHALLOW_CLONE]: added {"name":"GIT_RESOLVER_USE_SHALLOW_CLONE","value":"true"}`,
      `${env0}[name=METRICS_DOMAIN]: removed (was {"name":"METRICS_DOMAIN","value":"kpack.io"})`,
    ])
    // the same variables in another order is a change (it is what gets applied), said once
    const reordered = deploy(env(['CONFIG_LOGGING_NAME', 'config-logging'], ['INJECTED_SIDECAR_SUPPORT', 'false'], ['METRICS_DOMAIN', 'kpack.io']))
    expect(diffFields(before, reordered).map(formatFieldChange)).toEqual([
      `${env0} order: ["INJECTED_SIDECAR_SUPPORT","CONFIG_LOGGING_NAME"] -> ["CONFIG_LOGGING_NAME","INJECTED_SIDECAR_SUPPORT"]`,
    ])
    // in a long list, only the stretch that moved: the whole list would be clipped to the same text on both sides
    const long = Array.from({length: 20}, (_, i): [string, string] => [`VARIABLE_NUMBER_${i}`, String(i)])
    const swapped = [...long.slice(0, 17), long[18]!, long[17]!, long[19]!]
    expect(diffFields(deploy(env(...long)), deploy(env(...swapped))).map(formatFieldChange)).toEqual([
      `${env0} order: ["VARIABLE_NUMBER_17","VARIABLE_NUMBER_18"] -> ["VARIABLE_NUMBER_18","VARIABLE_NUMBER_17"]`,
    ])
    // a name that would break the path is quoted
    expect(diffFields(deploy(env(['a]b', '1'])), deploy(env(['a]b', '2']))).map((c) => c.path)).toEqual([`${env0}[name="a]b"].value`])
    // lists without names, or with a name twice, by index as before
    expect(diffFields(before, deploy(env(['INJECTED_SIDECAR_SUPPORT', 'false'], ['CONFIG_LOGGING_NAME', 'config-logging'], ['METRICS_DOMAIN', 'kpack.io']), ['--b'])).map(formatFieldChange))
      .toEqual(['spec.template.spec.containers[name=controller].args[0]: --a -> --b'])
    const twice = deploy(env(['X', '1'], ['X', '2']))
    expect(diffFields(twice, deploy(env(['X', '1'], ['X', '3']))).map(formatFieldChange)).toEqual([`${env0}[1].value: 2 -> 3`])
  })
})

describe("rollback's image check", () => {
  it("reads the platform's registry Secret, never a team's own account: with an anonymous platform a team's is the only one there", async () => {
    const v = await values()
    v.teams[0]!.registry = {username: 'payments-robot', password: 'team-pw-1234'}
    expect(platformRegistrySecret(renderPlatform(await lock17(), v).objects)?.metadata).toMatchObject({name: 'kp-default-repository-secret', namespace: 'kpack'})
    delete v.registry.username
    delete v.registry.password
    const anonymous = renderPlatform(await lock17(), v).objects
    expect(anonymous.some((o) => o.object.kind === 'Secret' && o.object.metadata.namespace === 'payments')).toBe(true)
    expect(platformRegistrySecret(anonymous)).toBeUndefined()
  })
})

describe('what a new revision deletes', () => {
  const o = (stage: RenderedObject['stage'], apiVersion: string, kind: string, name: string, namespace?: string): RenderedObject =>
    ({stage, object: {apiVersion, kind, metadata: {name, ...(namespace ? {namespace} : {}), labels: {}}}})
  it('objects the previous revision had and the new lacks, by group, kind, namespace and name; never CRDs, namespaces, or objects of a kind the new CRDs do not define', () => {
    const prev = [
      o('config', 'v1', 'ConfigMap', 'lifecycle-image', 'kpack'),
      o('stacks', 'kpack.io/v1alpha1', 'ClusterStack', 'base'),
      o('crds', 'apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'old.kpack.io'),
      o('teams', 'v1', 'Namespace', 'gone-team'),
      o('lifecycle', 'kpack.io/v1alpha2', 'ClusterLifecycle', 'default-lifecycle'),
    ]
    prev.push({stage: 'crds', object: {apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: {name: 'clusterlifecycles.kpack.io', labels: {}}, spec: {group: 'kpack.io', names: {kind: 'ClusterLifecycle'}}}})
    const next = [o('stacks', 'kpack.io/v1alpha2', 'ClusterStack', 'base')]
    const s = staleObjects(prev, next)
    expect(s.map((x) => [x.stage, x.object.kind, x.object.metadata.name, !!x.kept])).toEqual([
      ['config', 'ConfigMap', 'lifecycle-image', false],
      ['crds', 'CustomResourceDefinition', 'old.kpack.io', true],
      ['teams', 'Namespace', 'gone-team', true],
      ['platform', 'ClusterLifecycle', 'default-lifecycle', true],
      ['crds', 'CustomResourceDefinition', 'clusterlifecycles.kpack.io', true],
    ])
  })
})

describe('kpack impact, by build_required.go', () => {
  const run1 = 'reg.example/stacks/run@sha256:' + '1'.repeat(64)
  const run2 = 'other.example/relocated/run@sha256:' + '2'.repeat(64)
  const builder: FutureBuilder = {name: 'ClusterBuilder base', stackId: 'io.buildpacks.stacks.jammy', runImage: run2, buildpacks: new Set(['example/java@1.2.0', 'example/go@1.4.1']), lifecycleVersion: '0.20.4'}
  const build = (bps: string[], runImage: string, extra: Record<string, unknown> = {}) => ({buildMetadata: bps.map((b) => ({id: b.split('@')[0]!, version: b.split('@')[1]!})), stack: {runImage, id: 'io.buildpacks.stacks.jammy'}, lifecycleVersion: '0.20.4', ...extra})
  it('rebase: only the run image changes, same stack id; a relocation alone (same digest) changes nothing', () => {
    expect(judgeImpact(build(['example/java@1.2.0'], run1), builder)).toMatchObject({impact: 'rebase', reasons: ['STACK']})
    expect(judgeImpact(build(['example/java@1.2.0'], run2.replace('other.example/relocated', 'elsewhere/x')), builder)).toMatchObject({impact: 'none', reasons: []})
    expect(identifier('a.example/r:tag')).toBe('tag')
  })
  it('rebuild: a buildpack used leaves the builder, the lifecycle version changes, or the stack id changes', () => {
    expect(judgeImpact(build(['example/go@1.4.0'], run2), builder)).toMatchObject({impact: 'rebuild', reasons: ['BUILDPACK'], details: ['example/go@1.4.0 no longer in the builder']})
    expect(judgeImpact(build(['example/java@1.2.0'], run2, {lifecycleVersion: '0.17.0'}), builder)).toMatchObject({impact: 'rebuild', reasons: ['LIFECYCLE']})
    expect(judgeImpact(build(['example/java@1.2.0'], run1, {stack: {runImage: run1, id: 'io.buildpacks.stacks.bionic'}}), builder)).toMatchObject({impact: 'rebuild', reasons: ['STACK']})
  })
})

describe('revision records in parts', () => {
  it('a record over the part size goes into several Secrets that read back whole', async () => {
    const lock = await lock17()
    // incompressible: random hex in a ConfigMap of the record
    const big = Array.from({length: 40_000}, () => Math.random().toString(16).slice(2)).join('')
    const record: RevisionRecord = {
      apiVersion: 'kpi.dev/v1alpha1', kind: 'Revision', name: 'p', version: '1.0.0', kpackVersion: '0.17.0', revision: 7, operation: 'upgrade', status: 'deployed',
      kpiVersion: '0', startedAt: 't', updatedAt: 't', wait: 'ready', inputsDigest: 'sha256:x', lock, values: {}, redactedFields: [],
      objects: [{stage: 'config', object: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'big', labels: {}}, data: {big}}}], stages: [],
    }
    const secrets = revisionSecrets(record, undefined, 100 * 1024)
    expect(secrets.length).toBeGreaterThanOrEqual(3)
    const id = secrets[0]!.metadata.annotations?.['kpi.dev/parts-id']
    expect(id).toMatch(/^[0-9a-f]{12}$/)
    expect(secrets[0]!.metadata).toMatchObject({name: 'kpi.platform.v7', annotations: {'kpi.dev/parts': String(secrets.length)}})
    // the parts of each write have names of their own: another write of revision 7 never overwrites them
    expect(secrets[1]!.metadata).toMatchObject({name: `kpi.platform.v7.part2-${id}`, labels: {'kpi.dev/record': 'revision-part', 'kpi.dev/revision': '7'}})
    const other = revisionSecrets({...record, status: 'failed'}, undefined, 100 * 1024)
    expect(other[0]!.metadata.annotations?.['kpi.dev/parts-id']).not.toBe(id)
    expect(decodeRecord(secrets.map((s) => (s.data as Record<string, string>)['revision.json.gz']!), 'here')).toEqual(record)
    expect(revisionSecrets({...record, objects: []}).length).toBe(1)
  })
})

describe('the operation lease and an operation that died', () => {
  const lease = (spec: Record<string, unknown>) => live({apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: {name: 'kpi-operation', annotations: {'kpi.dev/operation': 'upgrade'}}, spec})
  it('a lease not renewed for its duration is dead; one renewed is held; one without a holder is free', () => {
    const now = new Date('2026-12-01T10:00:30Z')
    expect(leaseState(lease({holderIdentity: 'kpi upgrade (pid 1 on elsewhere)', leaseDurationSeconds: 15, acquireTime: '2026-12-01T10:00:00.000000Z', renewTime: '2026-12-01T10:00:20.000000Z'}), now)).toMatchObject({dead: false, operation: 'upgrade', since: '2026-12-01T10:00:00.000000Z'})
    expect(leaseState(lease({holderIdentity: 'kpi upgrade (pid 1 on elsewhere)', leaseDurationSeconds: 15, acquireTime: '2026-12-01T10:00:00.000000Z', renewTime: '2026-12-01T10:00:10.000000Z'}), now)).toMatchObject({dead: true, why: 'expired at 2026-12-01T10:00:25.000Z (not renewed for 15s)'})
    expect(leaseState(lease({leaseDurationSeconds: 15}), now)).toMatchObject({dead: true, why: 'released'})
  })
  it('a holder on this host whose process is gone is dead at once, but only when it ran in this PID namespace', async () => {
    const {readlinkSync} = await import('node:fs')
    const {hostname} = await import('node:os')
    const renewTime = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
    // no such process here (pid_max is 4194304): in another namespace it may well be alive
    const held = (annotations: Record<string, string>) => leaseState(live({
      apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: {name: 'kpi-operation', annotations: {'kpi.dev/operation': 'upgrade', ...annotations}},
      spec: {holderIdentity: `kpi upgrade (pid 4000000 on ${hostname()})`, leaseDurationSeconds: 60, acquireTime: renewTime, renewTime},
    }))
    expect(held({'kpi.dev/holder-pid-namespace': readlinkSync('/proc/self/ns/pid')})).toMatchObject({dead: true, why: `process 4000000 on ${hostname()} is gone`})
    // a container sharing the host name (hostNetwork pods, --uts=host): only the lease's expiry tells
    expect(held({'kpi.dev/holder-pid-namespace': 'pid:[1]'})).toMatchObject({dead: false})
    expect(held({})).toMatchObject({dead: false})
  })
  it('kpi status names the interrupted operation, the stage and the command that finishes it', () => {
    const r = {revision: 6, previousRevision: 5, operation: 'upgrade', status: 'pending-upgrade', description: 'upgrade 1.0.0 -> 1.1.0', stages: [{name: 'crds', status: 'ready'}, {name: 'controllers', status: 'applying'}]} as unknown as RevisionRecord
    const dead = leaseState(lease({holderIdentity: 'kpi upgrade (pid 1 on elsewhere)', leaseDurationSeconds: 5, acquireTime: '2026-01-01T00:00:00.000000Z', renewTime: '2026-01-01T00:00:00.000000Z'}))
    expect(operationState(r, dead)).toEqual({
      state: 'interrupted',
      message: 'interrupted: upgrade 1.0.0 -> 1.1.0 (revision 6) stopped during stage controllers: its kpi process died (expired at 2026-01-01T00:00:05.000Z (not renewed for 5s))',
      finishWith: 'kpi upgrade -b LOCK -f VALUES (the same lock finishes it), or kpi rollback 5',
    })
    expect(operationState({...r, status: 'deployed'}, undefined)).toBeUndefined()
  })
})

describe('version policy', () => {
  it('goes up, or stays; down only with --allow-downgrade', () => {
    expect(versionPolicy('1.0.0', '1.1.0', false, noTask)).toBe('upgrade 1.0.0 -> 1.1.0')
    expect(versionPolicy('1.1.0', '1.1.0', false, noTask)).toBe('same version 1.1.0 (values or images change)')
    expect(() => versionPolicy('1.1.0', '1.0.0', false, noTask)).toThrow(KpiError)
    expect(() => versionPolicy('1.1.0', '1.0.0', false, noTask)).toThrow(/1\.0\.0 is older than the installed 1\.1\.0/)
    expect(versionPolicy('1.1.0', '1.0.0', true, noTask)).toBe('downgrade 1.1.0 -> 1.0.0')
    expect(versionPolicy('1.1.0-rc.1', '1.1.0', false, noTask)).toBe('upgrade 1.1.0-rc.1 -> 1.1.0')
  })
})

describe('the Secrets a Deployment reads, for its secret versions', () => {
  it('are those kpi renders data for in an earlier stage: kpi-proxy, read by the controller when the proxy has credentials', async () => {
    const v = await values()
    const plan = (proxy: string) => planStages(renderPlatform(structuredClone(lockFixture), {...v, proxy: {...v.proxy, httpsProxy: proxy}}).objects)
    const lockFixture = await lock17()
    const secretsOf = (stages: ReturnType<typeof planStages>) => Object.fromEntries(stages.flatMap((s) => s.objects)
      .filter((o) => o.object.kind === 'Deployment').map((o) => [o.object.metadata.name, o.secrets]))
    expect(secretsOf(plan('http://squid:pw@proxy.corp.example:3128'))).toEqual({
      'kpack-controller': ['kpi-proxy'], 'kpack-webhook': undefined, 'cert-injection-webhook': undefined,
    })
    // no credentials: the proxy is plain env, no Secret to follow
    expect(secretsOf(plan('http://proxy.corp.example:3128'))['kpack-controller']).toBeUndefined()
    // a Secret applied in the same stage as its reader has no new version yet when the reader goes in
    const objects = renderPlatform(structuredClone(lockFixture), {...v, proxy: {...v.proxy, httpsProxy: 'http://squid:pw@proxy.corp.example:3128'}}).objects
    for (const o of objects) if (o.object.kind === 'Secret' && o.object.metadata.name === 'kpi-proxy') o.stage = 'kpack'
    expect(secretsOf(planStages(objects))['kpack-controller']).toBeUndefined()
  })
})
