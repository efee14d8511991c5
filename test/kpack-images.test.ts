/**
 * The sample images are images kpack accepts: each release of the sample platform, relocated to the
 * air-gapped registry and installed by kpi, is reconciled by the real kpack controller of that
 * release's version (v1: kpack 0.16.1, lifecycle from a ConfigMap; v2: 0.17.2, ClusterLifecycle),
 * run out of the cluster with the controller ServiceAccount's token and its Deployment's
 * environment. kpack marks the lifecycle, stack, store and builders Ready, and the builder image it
 * assembles from the lifecycle, stack and buildpackage layers is in the air-gapped registry at the
 * builder's tag. Slow (two control planes, real kpack); needs `npm run build` and
 * `bash scripts/tools.sh` (controlplane and platform).
 */
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {buffer} from 'node:stream/consumers'
import {join} from 'node:path'
import {stringify} from 'yaml'
import {afterAll, beforeAll, describe, expect, it, onTestFailed} from 'vitest'
import {loadBundle} from '../src/bundle/load.js'
import {createKubeClient, type Kube} from '../src/kube/client.js'
import type {LiveObject, ObjectRef} from '../src/kube/types.js'
import type {OciClient} from '../src/oci/client.js'
import type {ImageManifest} from '../src/oci/types.js'
import {startControlPlane, type ControlPlane} from '../src/sandbox/controlplane.js'
import {startSandbox, type Sandbox, type SampleVersion} from '../src/sandbox/sandbox.js'
import {kpi} from './helpers/cli.js'
import {assertComplete, refDigest, refRepo, sandboxClients} from './helpers/images.js'
import {startKpackController, type KpackController} from './helpers/kpack-controller.js'

let sb: Sandbox
let work: string
let failed = false

interface Condition {type: string; status: string; reason?: string; message?: string}
const kpackRef = (kind: string, name: string, namespace?: string): ObjectRef => ({apiVersion: 'kpack.io/v1alpha2', kind, name, ...(namespace ? {namespace} : {})})
const conditions = (o: LiveObject | undefined): Condition[] => ((o?.status as {conditions?: Condition[]} | undefined)?.conditions ?? [])
const describeObj = (ref: ObjectRef, o: LiveObject | undefined): string =>
  `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}: ${o ? JSON.stringify(conditions(o)) : 'absent'}`

interface ImageConfig {rootfs: {diff_ids: string[]}; config: {Labels: Record<string, string>}}

/** The config of the image `ref` (by digest) names, read through `client`. */
async function imageConfig(client: OciClient, ref: string): Promise<ImageConfig> {
  const m = JSON.parse((await client.getManifest(refRepo(ref), refDigest(ref))).bytes.toString('utf8')) as ImageManifest
  return JSON.parse((await buffer(await client.getBlob(refRepo(ref), m.config.digest))).toString('utf8')) as ImageConfig
}

/** Waits until kpack marks the object Ready=True for its current generation; throws with what it says. */
async function waitReady(kube: Kube, ref: ObjectRef, controller: KpackController, timeoutMs = 120_000): Promise<LiveObject> {
  const deadline = Date.now() + timeoutMs
  let last: LiveObject | undefined
  while (Date.now() < deadline) {
    last = await kube.get(ref)
    const status = last?.status as {observedGeneration?: number} | undefined
    const ready = conditions(last).find((c) => c.type === 'Ready')
    if (ready?.status === 'True' && status?.observedGeneration === last!.metadata.generation) return last!
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error(`not Ready after ${timeoutMs / 1000}s: ${describeObj(ref, last)}\nkpack controller log (${controller.logFile}):\n${await controller.tail()}`)
}

describe('the sample platform on the real kpack', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'kpi-kpack-images-'))
    sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1', 'v2']})
  })
  afterAll(async () => {
    await sb?.stop()
    if (sb && !failed) await rm(work, {recursive: true, force: true})
  })

  const cases: Array<[SampleVersion, string]> = [['v1', '0.16.1'], ['v2', '0.17.2']]
  it.each(cases)('%s: kpack %s makes the lifecycle, stack, store and builders Ready and pushes the builder image', async (version, kpackVersion) => {
    const dir = join(work, version)
    await mkdir(dir, {recursive: true})
    let cp: ControlPlane | undefined
    let controller: KpackController | undefined
    let kube: Kube | undefined
    onTestFailed(() => {
      failed = true
      console.error(`run dir kept: ${work} (control plane logs in ${cp?.logsDir}, kpack log ${controller?.logFile})`)
    })
    try {
      cp = await startControlPlane({runDir: join(dir, 'k8s')})
      const env = {...sb.env, KUBECONFIG: cp.kubeconfig}
      const lockFile = join(dir, 'lock.yaml')
      const rel = await kpi(['relocate', '-b', sb.bundles[version]!, '--to-repo', sb.airgapPrefix, '--lock-output', lockFile, '--ca-cert', sb.caFile], env)
      expect(rel.code, rel.stderr).toBe(0)
      const lock = (await loadBundle(lockFile)).bundle
      expect(lock.kpack.version).toBe(kpackVersion)
      const valuesFile = join(dir, 'values.yaml')
      await writeFile(valuesFile, stringify({
        registry: {server: sb.airgap.host, repository: 'build-service', username: sb.airgap.username, password: sb.airgap.password},
        caCerts: [await readFile(sb.caFile, 'utf8')],
        teams: [{name: 'payments', builders: [{name: 'java-only', stack: 'base', store: 'default', order: [{group: [{id: 'example/java'}]}]}]}],
        // kpack's webhook does not run here: nothing may wait for it to answer
        kpack: {webhook: {failurePolicy: 'Ignore'}},
      }))
      const inst = await kpi(['install', '-b', lockFile, '-f', valuesFile, '--ca-cert', sb.caFile, '--wait=applied'], env)
      expect(inst.code, inst.stderr).toBe(0)

      kube = await createKubeClient({kubeconfig: cp.kubeconfig})
      controller = await startKpackController({kube, adminKubeconfig: cp.kubeconfig, kpackVersion, caFile: sb.caFile, workDir: dir})

      // kpack 0.17 reads the lifecycle image through a ClusterLifecycle; 0.16 through the
      // lifecycle-image ConfigMap, which the ClusterBuilder needs to become Ready
      if (version === 'v2') {
        const lc = await waitReady(kube, kpackRef('ClusterLifecycle', 'default-lifecycle'), controller)
        expect((lc.status as {version?: string}).version).toBe('0.20.4')
      }
      const stack = await waitReady(kube, kpackRef('ClusterStack', 'base'), controller)
      expect(stack.status).toMatchObject({id: 'io.buildpacks.stacks.jammy', userId: 1000, groupId: 1000})
      const store = await waitReady(kube, kpackRef('ClusterStore', 'default'), controller)
      const ids = ((store.status as {buildpacks?: Array<{id: string}>}).buildpacks ?? []).map((b) => b.id).sort()
      expect(ids).toEqual(['example/go', 'example/java', 'example/jdk', 'example/maven', 'example/node-engine', 'example/nodejs', 'example/npm-install'])

      const {dst} = await sandboxClients(sb)
      try {
        const lifecycle = await imageConfig(dst, lock.lifecycle.image)
        for (const ref of [kpackRef('ClusterBuilder', 'base'), kpackRef('Builder', 'java-only', 'payments')]) {
          const builder = await waitReady(kube, ref, controller)
          const status = builder.status as {latestImage?: string; stack?: {id?: string}; builderMetadata?: Array<{id: string}>}
          const repo = (builder.spec as {tag: string}).tag
          expect(repo.startsWith(`${sb.airgapPrefix}/builders/`), repo).toBe(true)
          // kpi's tag names no tag: kpack then tags `<kind>-[<namespace>-]<name>` (resolveBuilderRef)
          const tag = ref.kind === 'ClusterBuilder' ? `clusterbuilder-${ref.name}` : `builder-${ref.namespace}-${ref.name}`
          expect(status.latestImage).toMatch(/@sha256:[0-9a-f]{64}$/)
          expect(status.latestImage!.replace(/@sha256:[0-9a-f]{64}$/, '')).toBe(`${repo}:${tag}`)
          // kpack pushed what it assembled to that tag in the air-gapped registry, every blob of it
          const atTag = await dst.headManifest(refRepo(repo), tag)
          expect(atTag?.digest).toBe(refDigest(status.latestImage!))
          await assertComplete(dst, refRepo(repo), refDigest(status.latestImage!))
          expect(status.stack?.id).toBe('io.buildpacks.stacks.jammy')
          const ids = (status.builderMetadata ?? []).map((b) => b.id)
          expect(ids).toContain('example/jdk')
          // the builder kpack assembled: the linux lifecycle layer the lifecycle image's labels name,
          // its version from them, and kpack's own version as the creator
          const cfg = await imageConfig(dst, status.latestImage!)
          expect(cfg.rootfs.diff_ids).toContain(lifecycle.config.Labels.linux)
          expect(cfg.rootfs.diff_ids).not.toContain(lifecycle.config.Labels.windows)
          const meta = JSON.parse(cfg.config.Labels['io.buildpacks.builder.metadata']!) as {lifecycle: {version: string}; createdBy: {version: string}}
          expect(meta.lifecycle.version).toBe('0.20.4')
          expect(meta.createdBy.version).toContain(`v${kpackVersion}`)
        }
      } finally {
        await dst.close()
      }
    } finally {
      await controller?.stop()
      kube?.close()
      await cp?.stop()
    }
  }, 600_000)
})
