/**
 * kpack's own controller (the binary scripts/tools.sh built for a kpack version) run beside a
 * control plane, out of the cluster: `--kubeconfig` with a token of the controller's ServiceAccount
 * (TokenRequest), so kpack gets exactly the RBAC kpi rendered, and the environment of the
 * kpack-controller Deployment kpi applied (values, ConfigMap and Secret references, the namespace
 * from the downward API). The CA certificates the Deployment mounts for SSL_CERT_DIR cannot be
 * mounted out of the cluster: SSL_CERT_FILE names the sandbox CA instead.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {createWriteStream} from 'node:fs'
import {readFile, writeFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {parse, stringify} from 'yaml'
import type {Kube} from '../../src/kube/client.js'
import type {LiveObject} from '../../src/kube/types.js'
import {kpackBinaryPath} from '../../src/sandbox/tools.js'

const NS = 'kpack'

interface EnvVar {
  name: string
  value?: string
  valueFrom?: {
    fieldRef?: {fieldPath: string}
    configMapKeyRef?: {name: string; key: string; optional?: boolean}
    secretKeyRef?: {name: string; key: string; optional?: boolean}
  }
}

export interface KpackController {
  /** the controller's stdout and stderr */
  logFile: string
  /** the last lines of the log, for failure messages */
  tail(lines?: number): Promise<string>
  stop(): Promise<void>
}

/** A TCP port nothing listens on now, for the controller's profiling and metrics servers. */
async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as {port: number}).port
  await new Promise((resolve) => srv.close(resolve))
  return port
}

/** The Deployment's container env as a kubelet resolves it (the subset kpi renders). */
async function deploymentEnv(kube: Kube, deployment: LiveObject): Promise<Record<string, string>> {
  const spec = deployment.spec as {template: {spec: {serviceAccountName: string; containers: Array<{env?: EnvVar[]}>}}}
  const out: Record<string, string> = {}
  const data = async (kind: 'ConfigMap' | 'Secret', name: string, key: string): Promise<string | undefined> => {
    const o = await kube.get({apiVersion: 'v1', kind, name, namespace: NS})
    const v = (o?.data as Record<string, string> | undefined)?.[key]
    return v === undefined || kind === 'ConfigMap' ? v : Buffer.from(v, 'base64').toString('utf8')
  }
  for (const e of spec.template.spec.containers[0]!.env ?? []) {
    let v: string | undefined = e.value
    const from = e.valueFrom
    if (from?.fieldRef) {
      if (from.fieldRef.fieldPath !== 'metadata.namespace') throw new Error(`env ${e.name}: fieldRef ${from.fieldRef.fieldPath} not supported here`)
      v = NS
    } else if (from?.configMapKeyRef) {
      v = await data('ConfigMap', from.configMapKeyRef.name, from.configMapKeyRef.key)
    } else if (from?.secretKeyRef) {
      v = await data('Secret', from.secretKeyRef.name, from.secretKeyRef.key)
    }
    if (v === undefined && !(from?.configMapKeyRef?.optional || from?.secretKeyRef?.optional)) throw new Error(`env ${e.name}: no value`)
    if (v !== undefined) out[e.name] = v
  }
  return out
}

/** A kubeconfig for the same server as `adminKubeconfig`, authenticating with `token`. */
async function tokenKubeconfig(adminKubeconfig: string, token: string, file: string): Promise<string> {
  const admin = parse(await readFile(adminKubeconfig, 'utf8')) as {clusters: Array<{name: string; cluster: Record<string, unknown>}>}
  const cluster = admin.clusters[0]!
  await writeFile(file, stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [cluster],
    users: [{name: 'kpack-controller', user: {token}}],
    contexts: [{name: 'kpack-controller', context: {cluster: cluster.name, user: 'kpack-controller'}}],
    'current-context': 'kpack-controller',
  }), {mode: 0o600})
  return file
}

/**
 * Starts the controller of `kpackVersion` against the cluster `kube` talks to; resolves once the
 * process is spawned. `caFile`: the CA of the registries kpack reads and pushes to.
 */
export async function startKpackController(opts: {
  kube: Kube
  adminKubeconfig: string
  kpackVersion: string
  caFile: string
  workDir: string
}): Promise<KpackController> {
  const {kube} = opts
  const deployment = await kube.get({apiVersion: 'apps/v1', kind: 'Deployment', name: 'kpack-controller', namespace: NS})
  if (!deployment) throw new Error('no Deployment kpack/kpack-controller: install kpack first')
  const env = await deploymentEnv(kube, deployment)
  delete env.SSL_CERT_DIR
  const sa = (deployment.spec as {template: {spec: {serviceAccountName: string}}}).template.spec.serviceAccountName
  const tr = await kube.request<{status: {token: string}}>('POST', `/api/v1/namespaces/${NS}/serviceaccounts/${sa}/token`, {
    body: {apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: {expirationSeconds: 3600}},
  })
  if (tr.status !== 201) throw new Error(`TokenRequest for ServiceAccount ${NS}/${sa}: HTTP ${tr.status}`)
  const kubeconfig = await tokenKubeconfig(opts.adminKubeconfig, tr.body.status.token, join(opts.workDir, `kpack-controller-${opts.kpackVersion}.kubeconfig`))
  const logFile = join(opts.workDir, `kpack-controller-${opts.kpackVersion}.log`)
  const log = createWriteStream(logFile)
  const child: ChildProcess = spawn(kpackBinaryPath(opts.kpackVersion, 'controller'), ['--kubeconfig', kubeconfig], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: opts.workDir,
      // its temporary files (a tar per builder layer it makes) go with the test's directory
      TMPDIR: opts.workDir,
      ...env,
      SSL_CERT_FILE: opts.caFile,
      // out of the cluster, several controllers may share the host's ports
      PROFILING_PORT: String(await freePort()),
      METRICS_PROMETHEUS_PORT: String(await freePort()),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.pipe(log, {end: false})
  child.stderr!.pipe(log, {end: false})
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    logFile,
    tail: async (lines = 30) => (await readFile(logFile, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-lines).join('\n'),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(killer)
      await new Promise((resolve) => log.end(resolve))
    },
  }
}
