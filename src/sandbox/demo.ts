/**
 * The demo (`kpi demo`, `npm run demo`): the main job on the embedded default. A sandbox (a public
 * registry standing in for the internet, an air-gapped registry with auth and TLS, a real control
 * plane running kpack's own controller and webhook) and the sample platform; then kpi, run as a
 * user runs it, carries v1 across the air gap as one archive, installs it and waits for kpack to
 * make everything Ready, and reports status. kpi sees only registry addresses, a docker config and
 * a kubeconfig. Core code: it reports through `io` and never prints.
 */
import {rm, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {sandboxEnv, sandboxValues} from './sandbox-files.js'
import {startSandbox, type Sandbox} from './sandbox.js'

export type DemoEvent =
  | {type: 'step'; title: string}
  | {type: 'info'; message: string}

export interface DemoIo {
  event(e: DemoEvent): void
  /** runs kpi with these arguments and environment as a user would; rejects when it fails */
  kpi(args: string[], env: Record<string, string>): Promise<void>
}

export interface DemoOptions {
  /** run directory, emptied first */
  dir: string
  /** set when the demo should stop early (Ctrl-C): the sandbox is stopped */
  signal?: AbortSignal
}

export async function runDemo(opts: DemoOptions, io: DemoIo): Promise<void> {
  const runDir = resolve(opts.dir)
  const step = (title: string) => io.event({type: 'step', title})
  const info = (message: string) => io.event({type: 'info', message})
  await rm(runDir, {recursive: true, force: true})
  step(`Starting the sandbox in ${runDir}`)
  const started = Date.now()
  let sb: Sandbox | undefined
  const onAbort = () => void sb?.stop()
  opts.signal?.addEventListener('abort', onAbort)
  try {
    sb = await startSandbox({runDir, controlPlane: true, samples: ['v1', 'v2']})
    info(`public registry   ${sb.public.host} (plain HTTP, stands in for the internet)`)
    info(`air-gapped        ${sb.airgap.host} (htpasswd + TLS, CA ${sb.caFile})`)
    info(`control plane     ${sb.controlPlane?.server} (kubeconfig ${sb.controlPlane?.kubeconfig}), pods in ${sb.controlPlane?.podCidr}`)
    for (const p of sb.missingPrograms) info(`not built, KWOK alone plays its pods: ${p} (bash scripts/tools.sh)`)
    info(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s`)
    const env = sandboxEnv(sb)
    const archive = join(runDir, 'build-service-1.0.0.tar')
    const lock = join(runDir, 'lock-v1.yaml')

    step('Connected side: check the bundle and write it into one archive')
    await io.kpi(['bundle', 'lint', sb.bundles.v1!], env)
    await io.kpi(['relocate', '-b', sb.bundles.v1!, '--to-tar', archive], env)
    await io.kpi(['tar', 'inspect', archive], env)

    step('Air-gapped side: stop the public registry, verify the archive, push it to the air-gapped registry')
    await sb.public.stop()
    await io.kpi(['tar', 'verify', archive], env)
    await io.kpi(['relocate', '--from-tar', archive, '--to-repo', sb.airgapPrefix, '--lock-output', lock, '--ca-cert', sb.caFile], env)
    info(`lock written: ${lock}`)

    step('Install the platform from the lock; kpack\'s own controller makes stacks, stores and builders Ready')
    const values = join(runDir, 'values.yaml')
    await writeFile(values, await sandboxValues(sb, ['team-a']), {mode: 0o600})
    await io.kpi(['install', '-b', lock, '-f', values, '--ca-cert', sb.caFile], env)
    await io.kpi(['status'], env)
    step('Install again with the same inputs: nothing changes')
    await io.kpi(['install', '-b', lock, '-f', values, '--ca-cert', sb.caFile], env)
    step('Demo finished')
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    await sb?.stop()
  }
}
