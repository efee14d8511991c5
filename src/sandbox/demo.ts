/**
 * The demo (`kpi demo`, `npm run demo`): the main job on the embedded default. A sandbox (a public
 * registry standing in for the internet, an air-gapped registry with auth and TLS, a real control
 * plane running kpack's own controller and webhook) and the sample platform; then kpi, run as a
 * user runs it, carries v1 across the air gap as one archive, installs it and waits for kpack to
 * make everything Ready, and reports status; then v2 crosses as a delta archive (only what v1 lacks),
 * `kpi diff` says what the upgrade will change, `kpi upgrade` moves to it stage by stage, an upgrade
 * whose controller cannot be scheduled fails its gate and is rolled back by itself, and
 * `kpi rollback 1` returns to v1. kpi sees only registry addresses, a docker config and a
 * kubeconfig. Core code: it reports through `io` and never prints.
 */
import {mkdir, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {parse, stringify} from 'yaml'
import {KpiError} from '../errors.js'
import {sandboxEnv, sandboxValues} from './sandbox-files.js'
import {startSandbox, type Sandbox} from './sandbox.js'

export type DemoEvent =
  | {type: 'step'; title: string}
  | {type: 'info'; message: string}

export interface DemoIo {
  event(e: DemoEvent): void
  /** runs kpi with these arguments and environment as a user would; rejects when it exits other than `exit` (0) */
  kpi(args: string[], env: Record<string, string>, exit?: number): Promise<void>
}

export interface DemoOptions {
  /** run directory, emptied first */
  dir: string
  /** set when the demo should stop early (Ctrl-C): the sandbox is stopped */
  signal?: AbortSignal
}

/** written into the demo's directory: the mark that a later demo may empty it */
const DEMO_MARK = '.kpi-demo'

/**
 * Empties the demo's directory, which is only ever one the demo made (or a new or empty one):
 * `--dir .` or `--dir ~` must not delete the user's files.
 */
async function emptyDemoDir(dir: string): Promise<void> {
  const entries = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[]
    throw new KpiError('usage', `--dir ${dir}: ${e.code === 'ENOTDIR' ? 'not a directory' : `cannot be read (${e.code})`}`, {hint: 'give a new directory for the demo'})
  })
  if (entries.length && !entries.includes(DEMO_MARK)) {
    throw new KpiError('usage', `--dir ${dir} holds files kpi demo did not make, and the demo empties its directory`, {
      hint: 'give a new or empty directory (an old demo directory without the .kpi-demo mark: remove it yourself)',
    })
  }
  await rm(dir, {recursive: true, force: true})
  await mkdir(dir, {recursive: true})
  await writeFile(join(dir, DEMO_MARK), 'made by kpi demo, which empties this directory when it runs again\n')
}

export async function runDemo(opts: DemoOptions, ioArg: DemoIo): Promise<void> {
  const runDir = resolve(opts.dir)
  const step = (title: string) => ioArg.event({type: 'step', title})
  const info = (message: string) => ioArg.event({type: 'info', message})
  await emptyDemoDir(runDir)
  step(`Starting the sandbox in ${runDir}`)
  const started = Date.now()
  let sb: Sandbox | undefined
  const onAbort = () => void sb?.stop()
  opts.signal?.addEventListener('abort', onAbort)
  // after an abort no further step runs against the stopped sandbox (its failure would hide why)
  const io = {...ioArg, kpi: async (...a: Parameters<DemoIo['kpi']>) => {
    interrupted()
    await ioArg.kpi(...a)
  }}
  const interrupted = () => {
    if (opts.signal?.aborted) throw new KpiError('interrupted', 'the demo was interrupted; its sandbox is stopped')
  }
  try {
    // the signal reaches the start too: Ctrl-C while the sandbox started was ignored until it was up
    sb = await startSandbox({runDir, controlPlane: true, samples: ['v1', 'v2'], teams: ['team-a'], signal: opts.signal})
    info(`public registry   ${sb.public.host} (plain HTTP, stands in for the internet)`)
    info(`air-gapped        ${sb.airgap.host} (htpasswd + TLS, CA ${sb.caFile})`)
    info(`control plane     ${sb.controlPlane?.server} (kubeconfig ${sb.controlPlane?.kubeconfig}), pods in ${sb.controlPlane?.podCidr}`)
    for (const p of sb.missingPrograms) info(`not built, KWOK alone plays its pods: ${p} (bash scripts/tools.sh)`)
    info(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s`)
    const env = sandboxEnv(sb)
    const archive = join(runDir, 'build-service-1.0.0.tar')
    const delta = join(runDir, 'build-service-1.1.0-delta.tar')
    const lock = join(runDir, 'lock-v1.yaml')
    const lock2 = join(runDir, 'lock-v2.yaml')

    step('Connected side: check the bundle and write it into one archive')
    await io.kpi(['bundle', 'lint', sb.bundles.v1!], env)
    await io.kpi(['relocate', '-b', sb.bundles.v1!, '--to-tar', archive], env)
    await io.kpi(['tar', 'inspect', archive], env)
    info('and the next release as a delta: only what v1 does not have')
    await io.kpi(['relocate', '-b', sb.bundles.v2!, '--to-tar', delta, '--since', sb.bundles.v1!], env)

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

    step('Air-gapped side: the delta archive of 1.1.0 (kpack 0.17) into the registry that holds 1.0.0')
    await io.kpi(['tar', 'verify', delta], env)
    await io.kpi(['relocate', '--from-tar', delta, '--to-repo', sb.airgapPrefix, '--lock-output', lock2, '--ca-cert', sb.caFile], env)
    step('What the upgrade will change, stage by stage, and what kpack will do to app images (exit 1: there are differences)')
    await io.kpi(['diff', '-b', lock2, '-f', values, '--ca-cert', sb.caFile], env, 1)
    step('Upgrade: stage by stage, each gated on health (kpack judges its resources); deleted last what 1.1.0 no longer has')
    await io.kpi(['upgrade', '-b', lock2, '-f', values, '--ca-cert', sb.caFile], env)
    await io.kpi(['history'], env)
    step('An upgrade whose controller asks more CPU than any node has: its gate fails on that (no waiting out the timeout), and the deployed revision comes back by itself (exit 12)')
    const greedy = join(runDir, 'values-greedy.yaml')
    const v = parse(await readFile(values, 'utf8')) as Record<string, unknown>
    await writeFile(greedy, stringify({...v, kpack: {controller: {resources: {requests: {cpu: '64'}}}}}), {mode: 0o600})
    await io.kpi(['upgrade', '-b', lock2, '-f', greedy, '--ca-cert', sb.caFile], env, 12)
    await io.kpi(['history'], env)
    step('Roll back to revision 1 (1.0.0), stage by stage and gated too')
    await io.kpi(['rollback', '1'], env)
    await io.kpi(['history'], env)
    await io.kpi(['status'], env)
    step('Demo finished')
  } catch (e) {
    interrupted()
    throw e
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    await sb?.stop()
  }
}
