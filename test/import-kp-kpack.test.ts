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
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {stringify} from 'yaml'
import {waitFor} from '../src/sandbox/procs.js'
import {sandboxValues} from '../src/sandbox/sandbox-files.js'
import {usePlatformSandbox} from './helpers/platform.js'
import {kpDescriptorV1alpha3} from './helpers/kp.js'
import {kpi, type CliResult} from './helpers/cli.js'

const p = usePlatformSandbox('import-kp-kpack', {samples: ['v2'], runPods: true})
const run = (args: string[]): Promise<CliResult> => kpi(args, p.env)

describe('a kp v1alpha3 descriptor by tag, imported, relocated and installed, with kpack making it Ready', () => {
  it('imports, relocates, installs; kpack makes the stacks, the store and the builders Ready', {timeout: 600_000}, async () => {
    p.nameRunDir()
    const sample = p.sb.bundle.v2!
    const descriptor = join(p.work, 'descriptor.yaml')
    await writeFile(descriptor, stringify(kpDescriptorV1alpha3(sample)))
    const bundle = join(p.work, 'imported')
    const imported = await run(['bundle', 'import-kp', descriptor, '-o', bundle, '--kpack-from', p.sb.bundles.v2!])
    expect(imported.code, imported.stderr).toBe(0)
    expect(imported.stderr).not.toContain('warning:')
    const lock = join(p.work, 'lock.yaml')
    const relocated = await run(['relocate', '-b', bundle, '--to-repo', p.sb.airgapPrefix, '--lock-output', lock, '--ca-cert', p.sb.caFile])
    expect(relocated.code, relocated.stderr).toBe(0)
    const values = join(p.work, 'values.yaml')
    await writeFile(values, await sandboxValues(p.sb), {mode: 0o600})
    // the default wait: kpack's Ready on every stack, store and builder
    const installed = await run(['install', '-b', lock, '-f', values, '--ca-cert', p.sb.caFile, '--timeout', '5m'])
    expect(installed.code, installed.stderr + installed.stdout).toBe(0)
    expect(installed.stdout).toContain('kpack readiness: every stack, store and builder is Ready')
    for (const [kind, name] of [['ClusterStack', 'jammy'], ['ClusterStack', 'default'], ['ClusterStore', 'default'], ['ClusterBuilder', 'base'], ['ClusterBuilder', 'default']] as const) {
      const ready = await waitFor(async () => {
        const o = await p.kube.get({apiVersion: 'kpack.io/v1alpha2', kind, name})
        const c = (o?.status as {conditions?: Array<{type: string; status: string}>} | undefined)?.conditions?.find((x) => x.type === 'Ready')
        return c?.status === 'True' ? c : undefined
      }, {what: `${kind} ${name} Ready by kpack`, timeoutMs: 60_000})
      expect(ready.status).toBe('True')
    }
  })
})
