/**
 * The local sandbox: a "public" registry standing in for the internet (plain HTTP, no auth),
 * an "air-gapped" registry (htpasswd auth and TLS from a CA the sandbox makes), optionally a
 * real control plane, and the sample platform's images pushed to the public registry. Tests and
 * the demo use it; kpi itself only ever sees registry addresses, a docker config and a kubeconfig.
 */
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {Bundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import {openOciLayout} from '../archive/layout.js'
import {generateSample, writeBundleDir} from '../imagegen/index.js'
import {createRegistryClient} from '../oci/index.js'
import {fromSource, toRegistry} from '../relocate/registry-endpoints.js'
import {relocate} from '../relocate/relocate.js'
import {startControlPlane, type ControlPlane, type FakeNode} from './controlplane.js'
import {requireRoot} from './netns.js'
import {makeCA} from './pki.js'
import {imageTable, type ImageTable} from './podimages.js'
import {startRegistry, type Registry} from './registry.js'

export type SampleVersion = 'v1' | 'v2'

export interface SandboxOptions {
  runDir: string
  /** start etcd, kube-apiserver, controller-manager, scheduler and KWOK (default false) */
  controlPlane?: boolean
  nodes?: FakeNode[]
  /** sample versions to generate and push to the public registry (default both) */
  samples?: SampleVersion[]
  /** layer size multiplier of the sample (1: a few MiB; 256: over 1 GiB) */
  scale?: number
  /**
   * With the control plane: run the real kpack (and cert-injection-webhook) binaries for the pods
   * whose images stand for them (podrunner.ts); default true. False leaves every pod to KWOK alone.
   */
  runPods?: boolean
  /** the air-gapped registry's user */
  username?: string
  password?: string
  /** teams with an account of their own on the air-gapped registry (`<team>-robot`: teamAccounts) */
  teams?: string[]
  /** aborted (Ctrl-C): the start stops what it started and throws, rather than finishing first */
  signal?: AbortSignal
}

export interface Sandbox {
  runDir: string
  public: Registry
  airgap: Registry
  controlPlane?: ControlPlane
  /** bundle directories of the sample versions, referencing the public registry */
  bundles: Partial<Record<SampleVersion, string>>
  bundle: Partial<Record<SampleVersion, Bundle>>
  /** where relocations go: `<airgap host>/build-service` */
  airgapPrefix: string
  /** each team's own account on the air-gapped registry (SandboxOptions.teams) */
  teamAccounts: Record<string, {username: string; password: string}>
  /** a docker config directory holding the air-gapped registry's credentials */
  dockerConfigDir: string
  /** the CA that signed the air-gapped registry's certificate */
  caFile: string
  /** the programs the pod runner runs for the sample's images */
  images: ImageTable
  /** programs the samples name that are not built (the runner leaves their pods to KWOK) */
  missingPrograms: string[]
  /** environment for kpi commands: DOCKER_CONFIG, KPI_PLAIN_HTTP (the public registry) */
  env: Record<string, string>
  stop(): Promise<void>
}

export async function startSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const runDir = opts.runDir
  if (opts.controlPlane && (opts.runPods ?? true)) requireRoot('the sandbox')
  await mkdir(runDir, {recursive: true})
  const username = opts.username ?? 'platform'
  const password = opts.password ?? `kpi-sandbox-${Math.random().toString(36).slice(2, 12)}`
  const teamAccounts = Object.fromEntries((opts.teams ?? []).map((t) => [t, {username: `${t}-robot`, password: `kpi-sandbox-${Math.random().toString(36).slice(2, 12)}`}]))
  const stops: Array<() => Promise<void>> = []
  // once, however often called: the demo calls it on Ctrl-C and again when it ends, and two runs
  // at once reversed the shared list under each other, so either could return before all stopped
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const s of stops.reverse()) await s().catch(() => {})
      stops.length = 0
    })()
    return stopping
  }
  // aborted by the caller, or by a failure here: a control plane still starting stops at once
  const starting = new AbortController()
  const onAbort = () => starting.abort()
  opts.signal?.addEventListener('abort', onAbort, {once: true})
  if (opts.signal?.aborted) starting.abort()
  const interrupted = () => {
    if (opts.signal?.aborted) throw new KpiError('failed', 'interrupted while the sandbox started')
  }
  let cpPromise: Promise<ControlPlane> | undefined
  try {
    const ca = await makeCA(join(runDir, 'ca'), 'kpi sandbox CA')
    const [pub, airgap] = await Promise.all([
      startRegistry({runDir: join(runDir, 'public'), name: 'public'}),
      startRegistry({runDir: join(runDir, 'airgap'), name: 'airgap', auth: {username, password}, moreUsers: Object.values(teamAccounts), tls: {ca}}),
    ])
    stops.push(pub.stop, airgap.stop)
    interrupted()
    // filled in below as the samples are generated; the runner looks images up as pods appear
    const images = imageTable()
    const missingPrograms: string[] = []
    const portOf = (host: string) => Number(host.slice(host.lastIndexOf(':') + 1))
    const pods = opts.runPods ?? true
      ? {binaryFor: images.binaryFor, forwardPorts: [portOf(pub.host), portOf(airgap.host)]}
      : undefined
    cpPromise = opts.controlPlane ? startControlPlane({runDir: join(runDir, 'k8s'), nodes: opts.nodes, pods, signal: starting.signal}) : undefined
    // started in parallel with the image generation; its failure is reported when awaited below
    cpPromise?.then((cp) => stops.push(cp.stop), () => {})

    const dockerConfigDir = join(runDir, 'docker')
    await mkdir(dockerConfigDir, {recursive: true})
    const auth = Buffer.from(`${username}:${password}`).toString('base64')
    await writeFile(join(dockerConfigDir, 'config.json'), JSON.stringify({auths: {[airgap.host]: {auth}}}, null, 2) + '\n', {mode: 0o600})

    const bundles: Sandbox['bundles'] = {}
    const bundle: Sandbox['bundle'] = {}
    const client = createRegistryClient({plainHttp: (r) => r === pub.host})
    try {
      for (const version of opts.samples ?? (['v1', 'v2'] as const)) {
        interrupted()
        const sample = await generateSample({version, layoutDir: join(runDir, 'layout'), scale: opts.scale})
        const b = sample.bundle(pub.host)
        const layout = await openOciLayout(sample.layoutDir)
        await relocate({from: fromSource(layout.source, b), to: toRegistry(client, {registry: pub.host, prefix: ''})})
        const dir = join(runDir, 'bundles', version)
        await writeBundleDir(b, dir)
        bundles[version] = dir
        bundle[version] = b
        missingPrograms.push(...images.add(b))
      }
    } finally {
      await client.close()
    }

    let controlPlane: ControlPlane | undefined
    if (cpPromise) {
      controlPlane = await cpPromise
    }
    interrupted()
    const env = {DOCKER_CONFIG: dockerConfigDir, KPI_PLAIN_HTTP: pub.host}
    const envFile = Object.entries({...env, KPI_CA_CERT: airgap.caFile ?? ca.cert, KPI_AIRGAP: `${airgap.host}/build-service`, KUBECONFIG: controlPlane?.kubeconfig ?? ''})
      .map(([k, v]) => `export ${k}=${JSON.stringify(v)}`).join('\n')
    await writeFile(join(runDir, 'sandbox.env'), envFile + '\n')
    return {
      runDir,
      public: pub,
      airgap,
      controlPlane,
      bundles,
      bundle,
      airgapPrefix: `${airgap.host}/build-service`,
      teamAccounts,
      dockerConfigDir,
      caFile: airgap.caFile ?? ca.cert,
      images,
      missingPrograms,
      env,
      stop,
    }
  } catch (e) {
    // a control plane still starting is not in `stops` yet: it stops itself on the abort, or
    // comes up and is stopped with the rest (it was left running after a failure here)
    starting.abort()
    await cpPromise?.catch(() => {})
    await stop()
    interrupted()
    throw e
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
  }
}
