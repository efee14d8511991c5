/**
 * Upgrades judged by kpack itself: the sandbox runs kpack's own controller and webhook for their
 * pods (0.16.1 for v1's images, 0.17.2 for v2's), so every Ready gate is kpack's word. v1 -> v2
 * moves the lifecycle from the ConfigMap to a ClusterLifecycle: the ConfigMap is deleted only once
 * the new one is Ready. Rolling back to v1 hands builders kpack 0.17 defaulted to kpack 0.16's
 * webhook. A v2 whose run image carries another stack id is refused by kpack; v1 comes back.
 * Run `npm run build` first: the CLI runs from dist/.
 */
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parse, stringify} from 'yaml'
import {describe, expect, it} from 'vitest'
import type {Bundle} from '../src/bundle/types.js'
import {conditionOf, type ObjectRef} from '../src/kube/types.js'
import {expectCleanFailure} from './helpers/cli.js'
import {sandboxClients} from './helpers/images.js'
import {usePlatformSandbox} from './helpers/platform.js'
import {restackedImage} from './helpers/restack.js'

const p = usePlatformSandbox('upgrade-kpack', {runPods: true})
const ready = ['--wait=ready', '--timeout', '180s']
let values = ''
const deployment = (name: string): ObjectRef => ({apiVersion: 'apps/v1', kind: 'Deployment', name, namespace: 'kpack'})
const imageOf = async (name: string) => ((await p.kube.get(deployment(name)))!.spec as {template: {spec: {containers: Array<{image: string}>}}}).template.spec.containers[0]!.image
const kpackReady = async (kind: string, name: string, namespace?: string) => conditionOf(await p.kube.get({apiVersion: 'kpack.io/v1alpha2', kind, name, namespace}), 'Ready')?.status

describe('upgrades judged by kpack on the sandbox', () => {
  it('v1 installs and kpack 0.16 makes it Ready; v1 -> v2 upgrades with kpack 0.17 judging; the lifecycle ConfigMap goes after the ClusterLifecycle is Ready', {timeout: 900_000}, async () => {
    p.nameRunDir()
    values = await p.values('values', {webhook: {failurePolicy: 'Fail'}})
    const lock1 = await p.relocate('v1')
    const inst = await p.run(['install', '-b', lock1, '-f', values, '--ca-cert', p.sb.caFile, ...ready])
    expect(inst.code, inst.stderr).toBe(0)
    expect(await kpackReady('ClusterBuilder', 'base')).toBe('True')

    const lock2 = await p.relocate('v2')
    const v2 = await p.lock('v2')
    const r = await p.run(['upgrade', '-b', lock2, '-f', values, '--ca-cert', p.sb.caFile, ...ready])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^Upgraded build-service 1\\.0\\.0 \\(kpack 0\\.16\\.1, revision 1\\) to 1\\.1\\.0 \\(kpack ${v2.kpack.version.replace(/\./g, '\\.')}\\) as revision 2`))
    expect(r.stdout).toContain('  kpack readiness: every stack, store and builder is Ready')
    const lines = r.stderr.split('\n')
    const lifecycleReady = lines.findIndex((l) => l.includes('ClusterLifecycle default-lifecycle Ready: done'))
    const mapDeleted = lines.findIndex((l) => l.includes('delete ConfigMap kpack/lifecycle-image: done'))
    expect(lifecycleReady, r.stderr).toBeGreaterThan(-1)
    expect(mapDeleted, r.stderr).toBeGreaterThan(lifecycleReady)
    expect(await p.kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'lifecycle-image', namespace: 'kpack'})).toBeUndefined()
    expect(await imageOf('kpack-controller')).toBe(v2.kpack.images.controller)
    expect(await imageOf('kpack-webhook')).toBe(v2.kpack.images.webhook)
    for (const [kind, name, ns] of [['ClusterLifecycle', 'default-lifecycle'], ['ClusterStack', 'base'], ['ClusterStore', 'default'], ['ClusterBuilder', 'base'], ['Builder', 'java-only', 'payments']] as const) {
      expect(await kpackReady(kind, name, ns), `${kind} ${name}`).toBe('True')
    }
    const h = await p.run(['history'])
    expect(h.stdout).toMatch(/\n1 +\S+ +1\.0\.0 +0\.16\.1 +superseded +install 1\.0\.0\n2 +\S+ +1\.1\.0 +\S+ +deployed +upgrade 1\.0\.0 -> 1\.1\.0\n$/)
  })

  it('kpi rollback 1 puts v1 back with kpack 0.16 judging it Ready again', {timeout: 900_000}, async () => {
    p.nameRunDir()
    const r = await p.run(['rollback', '1', ...ready])
    expect(r.code, r.stderr).toBe(0)
    expect(await imageOf('kpack-controller')).toBe((await p.lock('v1')).kpack.images.controller)
    expect(await p.kube.get({apiVersion: 'v1', kind: 'ConfigMap', name: 'lifecycle-image', namespace: 'kpack'})).toBeDefined()
    // kpack 0.16's webhook refuses to decode a ClusterLifecycle, even to delete it: it stays, as its CRD does
    expect(r.stdout).toContain('kept: ClusterLifecycle default-lifecycle')
    expect(await kpackReady('ClusterBuilder', 'base')).toBe('True')
    const st = await p.run(['status'])
    expect(st.code, st.stdout).toBe(0)
    expect(st.stdout.trim().split('\n').at(-1)).toBe('healthy')
  })

  it('a v2 whose run image carries another stack id: kpack marks the ClusterStack not Ready, the gate fails, v1 comes back by itself', {timeout: 900_000}, async () => {
    p.nameRunDir()
    const lock = parse(await readFile(await p.relocate('v2'), 'utf8')) as Bundle
    const {dst} = await sandboxClients(p.sb)
    try {
      lock.stacks[0]!.runImage = await restackedImage(dst, lock.stacks[0]!.runImage, 'io.example.stacks.other')
    } finally {
      await dst.close()
    }
    const file = join(p.work, 'lock-v2-other-stack.yaml')
    await writeFile(file, stringify(lock))
    const r = await p.run(['upgrade', '-b', file, '-f', values, '--ca-cert', p.sb.caFile, ...ready])
    const line = expectCleanFailure(r)
    expect(r.code).toBe(12)
    expect(line).toMatch(/^Error: upgrade to 1\.1\.0 failed at stage platform \(revision 4\): stage platform: ClusterStack base is not ready: kpack says: /)
    expect(line).toContain('run image stack: io.example.stacks.other')
    expect(line).toContain('rolled back by itself to revision 3 (1.0.0, recorded as revision 5), which is healthy')
    expect(await imageOf('kpack-controller')).toBe((await p.lock('v1')).kpack.images.controller)
    expect(await kpackReady('ClusterStack', 'base')).toBe('True')
    const st = await p.run(['status'])
    expect(st.code, st.stdout).toBe(0)
    for (const o of p.outputs) expect(o).not.toContain(p.sb.airgap.password!)
  })
})
