/**
 * The acceptance of kp descriptors end to end: a kp.kpack.io/v1alpha3 descriptor naming the sample
 * images on the public registry by tag becomes a bundle (kpi bundle import-kp), which relocates to
 * the air-gapped registry and installs on the sandbox, where the real kpack (the pod runner runs
 * kpack's own controller and webhook) makes its ClusterStacks, ClusterStore and ClusterBuilders
 * Ready, including the "default" ones kp import makes from defaultClusterStack/defaultClusterBuilder.
 * The sample's v2 (kpack 0.17.2, the lifecycle as the ClusterLifecycle default-lifecycle, as kp's
 * v1alpha3 `lifecycle.image` becomes); kpack builds and pushes each builder image to the air-gapped
 * registry before it says Ready. (On v1, kpack 0.16.1, the same passes: checked by hand.)
 * Run `npm run build` first (the CLI runs from dist/).
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it, onTestFailed} from 'vitest'
import {stringify} from 'yaml'
import {createKubeClient, type Kube} from '../src/kube/client.js'
import {waitFor} from '../src/sandbox/procs.js'
import {sandboxValues} from '../src/sandbox/sandbox-files.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {kpi, type CliResult} from './helpers/cli.js'

let sb: Sandbox
let work: string
let env: Record<string, string>
let kube: Kube
let failed = false
const run = (args: string[]): Promise<CliResult> => kpi(args, env)
const tagOf = (ref: string): string => ref.slice(0, ref.indexOf('@'))

describe('a kp v1alpha3 descriptor by tag, imported, relocated and installed, with kpack making it Ready', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'kpi-import-kp-kpack-'))
    sb = await startSandbox({runDir: join(work, 'sandbox'), controlPlane: true, samples: ['v2']})
    expect(sb.missingPrograms, 'kpack binaries (bash scripts/tools.sh)').toEqual([])
    env = {...sb.env, KUBECONFIG: sb.controlPlane!.kubeconfig}
    kube = await createKubeClient({kubeconfig: sb.controlPlane!.kubeconfig})
  })
  afterAll(async () => {
    kube?.close()
    await sb?.stop()
    if (sb && !failed) await rm(work, {recursive: true, force: true})
  })

  it('imports, relocates, installs; kpack makes the stacks, the store and the builders Ready', {timeout: 600_000}, async () => {
    onTestFailed(() => {
      failed = true
      console.error(`sandbox run dir: ${sb.runDir} (pod logs in ${sb.controlPlane?.runDir}/logs/pods)`)
    })
    const sample = sb.bundle.v2!
    const stack = sample.stacks[0]!
    const descriptor = join(work, 'descriptor.yaml')
    await writeFile(descriptor, stringify({
      apiVersion: 'kp.kpack.io/v1alpha3',
      kind: 'DependencyDescriptor',
      defaultClusterStack: 'jammy',
      defaultClusterBuilder: 'base',
      lifecycle: {image: tagOf(sample.lifecycle.image)},
      clusterStores: [{name: 'default', sources: sample.stores[0]!.sources.map((s) => ({image: tagOf(s.image)}))}],
      clusterStacks: [{name: 'jammy', buildImage: {image: tagOf(stack.buildImage)}, runImage: {image: tagOf(stack.runImage)}}],
      clusterBuilders: [{name: 'base', clusterStack: 'jammy', clusterStore: 'default', order: sample.builders[0]!.order}],
    }))
    const bundle = join(work, 'imported')
    const imported = await run(['bundle', 'import-kp', descriptor, '-o', bundle, '--kpack-from', sb.bundles.v2!])
    expect(imported.code, imported.stderr).toBe(0)
    expect(imported.stderr).not.toContain('warning:')
    const lock = join(work, 'lock.yaml')
    const relocated = await run(['relocate', '-b', bundle, '--to-repo', sb.airgapPrefix, '--lock-output', lock, '--ca-cert', sb.caFile])
    expect(relocated.code, relocated.stderr).toBe(0)
    const values = join(work, 'values.yaml')
    await writeFile(values, await sandboxValues(sb), {mode: 0o600})
    // the default wait: kpack's Ready on every stack, store and builder
    const installed = await run(['install', '-b', lock, '-f', values, '--ca-cert', sb.caFile, '--timeout', '5m'])
    expect(installed.code, installed.stderr + installed.stdout).toBe(0)
    expect(installed.stdout).toContain('kpack readiness: every stack, store and builder is Ready')
    for (const [kind, name] of [['ClusterStack', 'jammy'], ['ClusterStack', 'default'], ['ClusterStore', 'default'], ['ClusterBuilder', 'base'], ['ClusterBuilder', 'default']] as const) {
      const ready = await waitFor(async () => {
        const o = await kube.get({apiVersion: 'kpack.io/v1alpha2', kind, name})
        const c = (o?.status as {conditions?: Array<{type: string; status: string}>} | undefined)?.conditions?.find((x) => x.type === 'Ready')
        return c?.status === 'True' ? c : undefined
      }, {what: `${kind} ${name} Ready by kpack`, timeoutMs: 60_000})
      expect(ready.status).toBe('True')
    }
  })
})
