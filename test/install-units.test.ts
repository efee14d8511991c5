/**
 * The pure parts of install: the stage plan, readiness rules, the revision record format and its
 * redaction, the values credentials preflight uses, duration flags. (The parts that talk to a
 * cluster are tested on a real one: kube-client.test.ts, install-cli.test.ts.)
 */
import {describe, expect, it} from 'vitest'
import {INSTALL_STAGES, planStages} from '../src/apply/plan.js'
import {valuesCredentials} from '../src/apply/preflight.js'
import {parseDuration} from '../src/cli/duration.js'
import {KpiError} from '../src/errors.js'
import {deploymentReadiness, endpointsReadiness, kpackReadiness} from '../src/kube/readiness.js'
import type {LiveObject} from '../src/kube/types.js'
import {renderPlatform} from '../src/render/render.js'
import {STAGES} from '../src/render/types.js'
import type {Values} from '../src/values/types.js'
import {
  decodeRecord, encodeRecord, inputsDigest, redactObjects, redactValues, revisionSecret, type RevisionRecord,
} from '../src/revision/record.js'
import {CANARY, lock17, reverseKeys, values} from './fixtures/render/helpers.js'

const live = (o: Record<string, unknown>) => o as unknown as LiveObject

describe('install stages', () => {
  it('place every rendered object in exactly one stage, in render stage order, with the check that says it is ready', async () => {
    const {objects} = renderPlatform(await lock17(), await values())
    const stages = planStages(objects)
    expect(stages.map((s) => s.name)).toEqual(['crds', 'config', 'controllers', 'platform', 'builders', 'teams'])
    expect(INSTALL_STAGES.flatMap((s) => s.renders)).toEqual([...STAGES])
    expect(stages.flatMap((s) => s.objects.map((o) => o.object))).toEqual(objects.map((o) => o.object))
    const checkOf = (kind: string, name: string) => stages.flatMap((s) => s.objects).find((o) => o.object.kind === kind && o.object.metadata.name === name)!.check
    expect(checkOf('CustomResourceDefinition', 'images.kpack.io')).toBe('established')
    expect(checkOf('Deployment', 'kpack-controller')).toBe('rollout')
    expect(checkOf('Service', 'kpack-webhook')).toBe('endpoints')
    expect(checkOf('ClusterLifecycle', 'default-lifecycle')).toBe('kpack-ready')
    expect(checkOf('ClusterBuilder', 'base')).toBe('kpack-ready')
    expect(checkOf('Builder', 'java-only')).toBe('kpack-ready')
    expect(checkOf('ConfigMap', 'kp-config')).toBe('applied')
    const teams = stages.find((s) => s.name === 'teams')!
    // team namespaces go in before the objects that live in them
    expect(teams.objects.filter((o) => o.wave === 0).map((o) => o.object.kind)).toEqual(['Namespace', 'Namespace'])
  })
})

describe('readiness rules', () => {
  const deployment = (status: Record<string, unknown>, generation = 2, replicas = 2) =>
    live({apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'd', generation}, spec: {replicas}, status})

  it('a Deployment is ready when the current generation is rolled out and available, as kubectl rollout status says', () => {
    const available = {type: 'Available', status: 'True'}
    expect(deploymentReadiness(deployment({observedGeneration: 1, replicas: 2, updatedReplicas: 2, availableReplicas: 2, conditions: [available]})).message)
      .toBe('the deployment controller has not observed generation 2 yet')
    expect(deploymentReadiness(deployment({observedGeneration: 2, replicas: 3, updatedReplicas: 2, availableReplicas: 2, conditions: [available]})).message)
      .toBe('1 old replicas pending termination')
    expect(deploymentReadiness(deployment({observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 1, conditions: [available]})).message)
      .toBe('1 of 2 updated replicas available')
    expect(deploymentReadiness(deployment({observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2, conditions: [available]})).state).toBe('ready')
    const stuck = deploymentReadiness(deployment({observedGeneration: 2, conditions: [{type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "d-1" has timed out progressing.'}]}))
    expect(stuck).toMatchObject({state: 'failed', message: 'rollout stuck: ReplicaSet "d-1" has timed out progressing.'})
    // the stuck rollout of the generation before (a rollback's new spec not observed yet) is not this one's
    const undone = deploymentReadiness(deployment({observedGeneration: 1, conditions: [{type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "d-1" has timed out progressing.'}]}))
    expect(undone).toMatchObject({state: 'progressing', message: 'the deployment controller has not observed generation 2 yet'})
  })

  it('a kpack resource is judged by the Ready condition of the generation kpack observed', () => {
    const kp = (generation: number, status?: Record<string, unknown>) => live({apiVersion: 'kpack.io/v1alpha2', kind: 'ClusterStack', metadata: {name: 's', generation}, ...(status ? {status} : {})})
    expect(kpackReadiness(kp(1)).message).toBe('kpack has not reconciled it yet (no status)')
    expect(kpackReadiness(kp(2, {observedGeneration: 1, conditions: [{type: 'Ready', status: 'False', message: 'old'}]})).state).toBe('progressing')
    expect(kpackReadiness(kp(2, {observedGeneration: 2, conditions: [{type: 'Ready', status: 'False', message: 'stack id mismatch'}]}))).toMatchObject({state: 'failed', message: 'stack id mismatch'})
    expect(kpackReadiness(kp(2, {observedGeneration: 2, conditions: [{type: 'Ready', status: 'True'}]})).state).toBe('ready')
    expect(kpackReadiness(kp(2, {observedGeneration: 2, conditions: [{type: 'Ready', status: 'Unknown', reason: 'Building'}]})).message).toBe('Ready=Unknown (Building)')
  })

  it('a Service is ready when every endpoint is ready and none is of a pod going away', () => {
    const slice = (endpoints: unknown[]) => live({apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: {name: 'x'}, endpoints})
    expect(endpointsReadiness([]).message).toBe('no endpoints yet')
    expect(endpointsReadiness([slice([{addresses: ['10.0.0.1'], conditions: {ready: false}}])]).message).toBe('0 of 1 endpoints ready')
    expect(endpointsReadiness([slice([{addresses: ['10.0.0.2'], conditions: {}}])]).state).toBe('ready')
    // a pod still starting, or one going away, is not the Service's answer yet
    expect(endpointsReadiness([slice([{addresses: ['10.0.0.1'], conditions: {ready: false}}, {addresses: ['10.0.0.2'], conditions: {}}])]).message).toBe('1 of 2 endpoints ready')
    expect(endpointsReadiness([slice([{addresses: ['10.0.0.1'], conditions: {ready: false, terminating: true}}, {addresses: ['10.0.0.2'], conditions: {}}])]).message).toBe('1 endpoint of pods going away')
    const old = {addresses: ['10.0.0.1'], conditions: {ready: true}, targetRef: {kind: 'Pod', name: 'webhook-old'}}
    expect(endpointsReadiness([slice([old])]).state).toBe('ready')
    expect(endpointsReadiness([slice([old])], new Set(['webhook-old'])).state).toBe('progressing')
  })
})

describe('revision record', () => {
  it('keeps no credential: password, docker config JSON, proxy userinfo and Secret data are removed', async () => {
    const v: Values = await values()
    v.registry.dockerConfigJson = JSON.stringify({auths: {x: {auth: Buffer.from(`u:${CANARY}`).toString('base64')}}})
    v.proxy = {httpProxy: `http://proxyuser:${CANARY}@proxy.corp.example:3128`, noProxy: []}
    const r = redactValues(v)
    expect(r.redactedFields).toEqual(['registry.password', 'registry.dockerConfigJson', 'proxy.httpProxy credentials'])
    expect((r.values.proxy as {httpProxy: string}).httpProxy).toBe('http://proxy.corp.example:3128/')
    expect((r.values.registry as Record<string, unknown>).username).toBe('robot$kpi')
    const objects = redactObjects(renderPlatform(await lock17(), v).objects)
    const all = JSON.stringify({values: r.values, objects})
    expect(all).not.toContain(CANARY)
    expect(all).not.toContain(Buffer.from(CANARY).toString('base64').slice(0, 16))
    const secret = objects.find((o) => o.object.kind === 'Secret' && o.object.metadata.name === 'kp-default-repository-secret')!
    expect(secret.object.data).toEqual({'.dockerconfigjson': '<redacted>'})
  })

  it("keeps no team's credential either: each team's password and docker config are removed, named by team", async () => {
    const v: Values = await values()
    v.teams[0]!.registry = {repository: 'teams/payments', username: 'payments-robot', password: `${CANARY}-team`}
    v.teams[1]!.registry = {dockerConfigJson: JSON.stringify({auths: {x: {auth: Buffer.from(`w:${CANARY}-web`).toString('base64')}}})}
    const r = redactValues(v)
    expect(r.redactedFields).toEqual(['registry.password', 'teams[0].registry.password', 'teams[1].registry.dockerConfigJson'])
    expect((r.values.teams as Array<{registry: unknown}>)[0]!.registry).toEqual({repository: 'teams/payments', username: 'payments-robot'})
    const all = JSON.stringify({values: r.values, objects: redactObjects(renderPlatform(await lock17(), v).objects)})
    expect(all).not.toContain(CANARY)
    expect(all).not.toContain(Buffer.from(`w:${CANARY}`).toString('base64').slice(0, 12))
    // the values given are untouched
    expect(v.teams[0]!.registry!.password).toBe(`${CANARY}-team`)
  })

  it('redaction walks any list the schema marks: secret items themselves, and secret fields of lists in lists', () => {
    const schema = {
      properties: {
        tokens: {type: 'array', items: {type: 'string', secret: true}},
        groups: {type: 'array', items: {properties: {members: {type: 'array', items: {properties: {name: {type: 'string'}, password: {type: 'string', secret: true}, proxy: {type: 'string', secret: 'userinfo'}}}}}}},
      },
    }
    const given = {tokens: ['t-1', 't-2'], groups: [{members: [{name: 'a', password: 'p-a', proxy: 'http://u:p@proxy:3128'}]}, {members: [{name: 'b'}]}]}
    const r = redactValues(given as unknown as Values, schema)
    expect(r.redactedFields).toEqual(['tokens[0]', 'tokens[1]', 'groups[0].members[0].password', 'groups[0].members[0].proxy credentials'])
    const text = JSON.stringify(r.values)
    for (const secret of ['t-1', 't-2', 'p-a', 'u:p']) expect(text).not.toContain(secret)
    expect((r.values.groups as Array<{members: Array<Record<string, unknown>>}>)[0]!.members[0]).toEqual({name: 'a', proxy: 'http://proxy:3128/'})
  })

  it('the inputs digest ignores key order and changes with the lock', async () => {
    const lock = await lock17()
    const v = redactValues(await values()).values
    const objects = redactObjects(renderPlatform(lock, await values()).objects)
    const d = inputsDigest(lock, v, objects)
    expect(d).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(inputsDigest(reverseKeys(lock), reverseKeys(v), reverseKeys(objects))).toBe(d)
    const other = structuredClone(lock)
    other.metadata.version = '9.9.9'
    expect(inputsDigest(other, v, objects)).not.toBe(d)
  })

  it('is a kpi.dev/revision Secret with labels history can list, holding the record gzip\'d', async () => {
    const lock = await lock17()
    const record: RevisionRecord = {
      apiVersion: 'kpi.dev/v1alpha1', kind: 'Revision', name: lock.metadata.name, version: lock.metadata.version, kpackVersion: lock.kpack.version,
      revision: 3, previousRevision: 2, operation: 'upgrade', status: 'pending-upgrade', kpiVersion: '0.1.0',
      startedAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z', wait: 'ready', inputsDigest: 'sha256:' + '1'.repeat(64),
      lock, values: {}, redactedFields: [], objects: [], stages: [{name: 'crds', status: 'pending', objects: 10, changed: 0}],
    }
    const s = revisionSecret(record, '42')
    expect(s.metadata).toMatchObject({name: 'kpi.platform.v3', namespace: 'kpi-system', resourceVersion: '42'})
    expect(s.type).toBe('kpi.dev/revision')
    expect(s.metadata.labels).toEqual({
      'app.kubernetes.io/managed-by': 'kpi', 'kpi.dev/record': 'revision', 'kpi.dev/name': lock.metadata.name,
      'kpi.dev/version': lock.metadata.version, 'kpi.dev/revision': '3', 'kpi.dev/status': 'pending-upgrade',
    })
    const data = (s.data as Record<string, string>)['revision.json.gz']!
    expect(decodeRecord(data, 'here')).toEqual(record)
    expect(encodeRecord(record).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]))
    expect(() => decodeRecord(Buffer.from('not gzip').toString('base64'), 'Secret kpi-system/kpi.platform.v3')).toThrow(/^Secret kpi-system\/kpi\.platform\.v3: the revision record cannot be read/)
  })
})

describe('preflight credentials and flags', () => {
  it('asks the registry with the values\' credentials, for the values\' registry only', async () => {
    const creds = valuesCredentials({server: 'reg.example:5000', repository: 'p', username: 'u', password: 'p1'})
    expect(await creds('reg.example:5000')).toMatchObject({username: 'u', password: 'p1'})
    expect(await creds('other.example')).toBeUndefined()
    const fromJson = valuesCredentials({server: 'reg.example', repository: 'p', dockerConfigJson: JSON.stringify({auths: {'https://reg.example/v1/': {auth: Buffer.from('robot:s3cret').toString('base64')}}})})
    expect(await fromJson('reg.example')).toMatchObject({username: 'robot', password: 's3cret'})
  })

  it('reads durations like 90s, 5m and 1h30m', () => {
    expect(parseDuration('90s', '--timeout')).toBe(90_000)
    expect(parseDuration('5m', '--timeout')).toBe(300_000)
    expect(parseDuration('1h30m', '--timeout')).toBe(5_400_000)
    expect(parseDuration('120', '--timeout')).toBe(120_000)
    expect(() => parseDuration('5 minutes', '--timeout')).toThrow(KpiError)
    expect(() => parseDuration('0s', '--timeout')).toThrow(/--timeout "0s" is not a duration/)
    // bare seconds too: --registry-timeout 0 would turn the registry timeout off
    expect(() => parseDuration('0', '--registry-timeout')).toThrow(/--registry-timeout "0" is not a duration/)
    expect(() => parseDuration('00', '--timeout')).toThrow(KpiError)
  })
})
