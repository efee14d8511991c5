/**
 * A real Kubernetes control plane on loopback, for tests and the demo: etcd, kube-apiserver,
 * kube-controller-manager and kube-scheduler built from their Go modules (scripts/tools.sh), with
 * KWOK playing the kubelets of a few fake nodes so pods get scheduled, run and become Ready without a
 * container runtime. Everything listens on 127.0.0.1 on free ports and lives under one run directory.
 */
import {mkdir, readdir, readFile, rename} from 'node:fs/promises'
import {request} from 'node:https'
import {request as httpRequest} from 'node:http'
import {join, resolve} from 'node:path'
import {KpiError} from '../errors.js'
import {createKubeClient, type Kube} from '../kube/client.js'
import {apiError} from '../kube/errors.js'
import type {LiveObject} from '../kube/types.js'
import {makePki, writeKubeconfig} from './controlplane-pki.js'
import {freePorts, startProcess, tailLog, waitFor, type Proc} from './procs.js'
import {toolPath} from './tools.js'
import {kwokStages} from './kwok-stages.js'
import {allocatePodSubnet, type PodSubnet} from './podnet.js'
import {requireRoot} from './netns.js'
import {startHostForwarders, type HostForwarders} from './forward.js'
import type {PodRunner, PodRunnerOptions} from './podrunner.js'

export interface FakeNode {
  name: string
  /** e.g. `4` or `4000m` */
  cpu: string
  /** e.g. `16Gi` */
  memory: string
  /** pod capacity, 110 when unset */
  pods?: number
}

export interface ControlPlaneOptions {
  runDir: string
  /** fake nodes KWOK manages; two of 4 CPU / 16Gi / 110 pods when unset */
  nodes?: FakeNode[]
  /** how long to wait for everything to become ready, 180 s when unset (cold caches, 2 busy cores) */
  timeoutMs?: number
  /**
   * Run real programs for the pods whose image stands for one (podrunner.ts): the sandbox then
   * takes a pod subnet of its own (podnet.ts) and KWOK hands pod addresses from it.
   */
  pods?: {
    binaryFor: PodRunnerOptions['binaryFor']
    /** loopback ports besides the apiserver's that pods reach (registries) */
    forwardPorts?: number[]
  }
  /**
   * Aborted (Ctrl-C of the demo, a sandbox that failed beside): the start stops what it started
   * and throws, instead of going on to start the rest
   */
  signal?: AbortSignal
}

export interface ControlPlane {
  /** path of an admin kubeconfig (client certificate in system:masters) */
  kubeconfig: string
  /** https://127.0.0.1:<port> */
  server: string
  /** the sandbox CA that signed the apiserver's serving certificate */
  caFile: string
  runDir: string
  /** one log file per component: etcd.log, kube-apiserver.log, ... */
  logsDir: string
  nodes: string[]
  /** the /24 KWOK gives pod addresses from, when pods run (options.pods) */
  podCidr?: string
  podRunner?: PodRunner
  stop(): Promise<void>
  /** stop kube-apiserver (and wait `downMs`), start it again, wait until it is ready */
  restartApiserver(downMs?: number): Promise<void>
}

/** The annotation KWOK is told to look for: only nodes carrying it are played by KWOK. */
export const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node'

const defaultNodes: FakeNode[] = [
  {name: 'kwok-node-0', cpu: '4', memory: '16Gi', pods: 110},
  {name: 'kwok-node-1', cpu: '4', memory: '16Gi', pods: 110},
]

const SERVICE_CIDR = '10.96.0.0/16'

/**
 * Ports are picked free, then bound by the processes a moment later: a process of a test running
 * beside may take one in between (a CI run saw kube-apiserver fail with "bind: address already in
 * use"). Such a start is tried again with new ports, its directory kept beside as `DIR.attempt-N`.
 */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const runDir = resolve(opts.runDir)
  if (opts.pods) requireRoot('the control plane with pods')
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts)
    } catch (e) {
      if (attempt >= 3 || opts.signal?.aborted || !(await portTaken(join(runDir, 'logs')))) throw e
      await rename(runDir, `${runDir}.attempt-${attempt}`)
    }
  }
}

/**
 * KWOK 0.8 makes its pool of pod addresses on first use, by a lookup then a store that are not
 * one step (PodController.ipPool): pods given addresses side by side at that moment can draw from
 * two pools, and two live pods get one address (seen: kpack-webhook given 10.244.251.1 while
 * cert-injection-webhook held it; the pod runner, whose namespaces are named by address, then
 * killed the one to start the other). One pod given an address first makes the pool before any
 * other pod asks.
 */
async function warmPodIpPool(kube: Kube, node: string, wait: {timeoutMs: number; procs: Proc[]}): Promise<void> {
  const ref = {apiVersion: 'v1', kind: 'Pod', name: 'kpi-sandbox-address-pool', namespace: 'default'}
  await kube.create({
    apiVersion: 'v1', kind: 'Pod', metadata: {name: ref.name, namespace: ref.namespace},
    spec: {nodeName: node, containers: [{name: 'pool', image: 'kpi.invalid/address-pool'}]},
  })
  await waitFor(async () => !!((await kube.get(ref))?.status as {podIP?: string} | undefined)?.podIP, {
    what: `pod ${ref.namespace}/${ref.name} given an address (KWOK)`, ...wait, intervalMs: 200,
  })
  // no kubelet to wait for: gone at once
  const res = await kube.request('DELETE', `/api/v1/namespaces/${ref.namespace}/pods/${ref.name}`, {query: {gracePeriodSeconds: 0}})
  if (![200, 202, 404].includes(res.status)) throw apiError(res, `delete pod ${ref.namespace}/${ref.name}`, kube.server)
  await waitFor(async () => !(await kube.get(ref)), {what: `pod ${ref.namespace}/${ref.name} gone`, ...wait, intervalMs: 200})
}

/** A process of the control plane could not bind its port. */
async function portTaken(logsDir: string): Promise<boolean> {
  const names = await readdir(logsDir).catch(() => [] as string[])
  const tails = await Promise.all(names.filter((n) => n.endsWith('.log')).map((n) => tailLog(join(logsDir, n), 20)))
  return tails.some((t) => /address already in use/.test(t))
}

async function startOnce(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const runDir = resolve(opts.runDir)
  const logsDir = join(runDir, 'logs')
  const nodes = opts.nodes ?? defaultNodes
  const timeoutMs = opts.timeoutMs ?? 180_000
  if (nodes.length === 0) throw new KpiError('usage', 'startControlPlane: nodes must name at least one node')
  await mkdir(logsDir, {recursive: true})

  const bins = {
    etcd: toolPath('etcd'),
    apiserver: toolPath('kube-apiserver'),
    kcm: toolPath('kube-controller-manager'),
    scheduler: toolPath('kube-scheduler'),
    kwok: toolPath('kwok'),
  }
  const stages = await kwokStages(!!opts.pods, join(runDir, 'kwok-stages'))

  const procs: Proc[] = []
  let subnet: PodSubnet | undefined
  let forwarders: HostForwarders | undefined
  let podRunner: PodRunner | undefined
  let restartApiserver: (downMs?: number) => Promise<void> = async () => {
    throw new KpiError('failed', 'the control plane is not started')
  }
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    // Dependants first, etcd last, so nothing logs a storm of errors about a vanished apiserver.
    stopping ??= (async () => {
      await podRunner?.stop()
      await forwarders?.close()
      subnet?.release()
      const [etcd, apiserver, ...rest] = procs
      await Promise.all(rest.map((p) => p.stop()))
      if (apiserver) await apiserver.stop()
      if (etcd) await etcd.stop()
    })()
    return stopping
  }

  // Abort: the processes running now stop, so the wait on them ends at once; no process starts
  // after it, and the catch below stops the rest (subnet, forwarders, pod runner) as on any failure
  const onAbort = () => {
    for (const p of procs) void p.stop()
  }
  opts.signal?.addEventListener('abort', onAbort, {once: true})
  const spawn: typeof startProcess = async (spec) => {
    if (opts.signal?.aborted) throw new KpiError('failed', 'interrupted')
    const p = await startProcess(spec)
    procs.push(p)
    // started while the abort was handled: it goes with the rest in the catch
    if (opts.signal?.aborted) throw new KpiError('failed', 'interrupted')
    return p
  }

  try {
    const [etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort] = await freePorts(6) as [number, number, number, number, number, number]
    const pki = await makePki(join(runDir, 'pki'))
    const server = `https://127.0.0.1:${apiPort}`
    if (opts.pods) subnet = await allocatePodSubnet()

    const kubeconfig = join(runDir, 'kubeconfig')
    const kcmKubeconfig = join(runDir, 'kube-controller-manager.kubeconfig')
    const schedKubeconfig = join(runDir, 'kube-scheduler.kubeconfig')
    await writeKubeconfig(kubeconfig, server, pki.ca, pki.admin, 'kpi-admin')
    await writeKubeconfig(kcmKubeconfig, server, pki.ca, pki.kcm, 'system:kube-controller-manager')
    await writeKubeconfig(schedKubeconfig, server, pki.ca, pki.scheduler, 'system:kube-scheduler')

    const etcd = await spawn({
      name: 'etcd', cmd: bins.etcd, logDir: logsDir, args: [
        '--name=kpi',
        `--data-dir=${join(runDir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=kpi=http://127.0.0.1:${etcdPeer}`,
        // a throw-away store: durability buys nothing and fsync costs seconds on a busy disk
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
    })
    await waitFor(async () => (await httpGet(`http://127.0.0.1:${etcdClient}/health`)).includes('"true"'), {
      what: 'etcd /health', timeoutMs, procs: [etcd],
    })

    const startApiserver = () => spawn({
      name: 'kube-apiserver', cmd: bins.apiserver, logDir: logsDir, args: [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(runDir, 'pki')}`,
        `--tls-cert-file=${pki.apiserver.cert}`,
        `--tls-private-key-file=${pki.apiserver.key}`,
        `--client-ca-file=${pki.ca.cert}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${pki.sa.pub}`,
        `--service-account-signing-key-file=${pki.sa.key}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        '--authorization-mode=Node,RBAC',
        '--allow-privileged=true',
        // Endpoints may not hold a loopback address, and nothing routes to the service IP anyway.
        '--endpoint-reconciler-type=none',
        // The aggregation layer's front proxy, as kubeadm sets it up: controllers and extension
        // apiservers read this CA from kube-system/extension-apiserver-authentication.
        `--requestheader-client-ca-file=${pki.frontProxyCa.cert}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
        `--proxy-client-cert-file=${pki.frontProxyClient.cert}`,
        `--proxy-client-key-file=${pki.frontProxyClient.key}`,
        '--profiling=false',
        // webhook calls go to the Service's endpoint (pod) addresses, where the pod runner's
        // processes listen, instead of a ClusterIP nothing routes
        '--enable-aggregator-routing=true',
      ],
    })
    let apiserver = await startApiserver()
    const adminTls = {ca: pki.ca.certPem, cert: pki.admin.certPem, key: await readFile(pki.admin.key, 'utf8')}
    const apiserverReady = () => waitFor(async () => (await httpsGet(`${server}/readyz`, adminTls)) === 'ok', {
      what: 'kube-apiserver /readyz', timeoutMs, procs: [etcd, apiserver],
    })
    await apiserverReady()
    // For fault tests: the apiserver stopped and started again on the same port and etcd, as an
    // upgrade or a crash of the control plane does; every client sees its connections cut.
    restartApiserver = async (downMs = 0) => {
      await apiserver.stop()
      if (downMs) await new Promise((r) => setTimeout(r, downMs))
      const next = await startApiserver()
      // in its predecessor's place: stop() stops the apiserver second, before etcd
      procs.splice(procs.indexOf(next), 1)
      procs[procs.indexOf(apiserver)] = next
      apiserver = next
      await apiserverReady()
    }

    const kcm = await spawn({
      name: 'kube-controller-manager', cmd: bins.kcm, logDir: logsDir, args: [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        `--tls-cert-file=${pki.kcmServing.cert}`,
        `--tls-private-key-file=${pki.kcmServing.key}`,
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${pki.sa.key}`,
        `--root-ca-file=${pki.ca.cert}`,
        `--cluster-signing-cert-file=${pki.ca.cert}`,
        `--cluster-signing-key-file=${pki.ca.key}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        // what the platform uses (Deployments, ReplicaSets, Services and their EndpointSlices,
        // namespaces, service accounts, garbage collection, nodes and taints), not the rest:
        // kube-controller-manager builds every controller before it starts any, and building them
        // all held the nodes' not-ready taint for about 5 s of each control plane's start
        `--controllers=*,${UNUSED_CONTROLLERS.map((c) => `-${c}`).join(',')}`,
        '--leader-elect=false',
        // lift the not-ready taint from fresh nodes within a second, not five
        '--node-monitor-period=1s',
        '--profiling=false',
      ],
    })
    const scheduler = await spawn({
      name: 'kube-scheduler', cmd: bins.scheduler, logDir: logsDir, args: [
        `--kubeconfig=${schedKubeconfig}`,
        `--authentication-kubeconfig=${schedKubeconfig}`,
        `--authorization-kubeconfig=${schedKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${schedPort}`,
        `--tls-cert-file=${pki.schedServing.cert}`,
        `--tls-private-key-file=${pki.schedServing.key}`,
        '--leader-elect=false',
        '--profiling=false',
      ],
    })
    const kwok = await spawn({
      name: 'kwok', cmd: bins.kwok, logDir: logsDir, args: [
        `--kubeconfig=${kubeconfig}`,
        ...stages.map((s) => `--config=${s}`),
        '--manage-all-nodes=false',
        `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=fake`,
        `--server-address=127.0.0.1:${kwokPort}`,
        '--node-ip=127.0.0.1',
        // KWOK renews a Lease per node, as a kubelet does, so the node lifecycle controller keeps them Ready
        '--node-lease-duration-seconds=40',
        ...(subnet ? [`--cidr=${subnet.cidr}`] : []),
      ],
      // kwok reads ~/.kwok/kwok.yaml when present; keep a stray one from changing the sandbox
      env: {HOME: runDir},
    })

    const all = [etcd, apiserver, kcm, scheduler, kwok]
    const servingTls = {ca: pki.ca.certPem}
    await Promise.all([
      waitFor(async () => (await httpsGet(`https://127.0.0.1:${kcmPort}/healthz`, servingTls)) === 'ok', {
        what: 'kube-controller-manager /healthz', timeoutMs, procs: all,
      }),
      waitFor(async () => (await httpsGet(`https://127.0.0.1:${schedPort}/healthz`, servingTls)) === 'ok', {
        what: 'kube-scheduler /healthz', timeoutMs, procs: all,
      }),
      waitFor(async () => (await httpGet(`http://127.0.0.1:${kwokPort}/healthz`)) === 'ok', {
        what: 'kwok /healthz', timeoutMs, procs: all,
      }),
    ])

    // kpi's own client: @kubernetes/client-node costs about 0.8 CPU-s to load, paid by every test
    // file that starts a control plane; only the pod runner (below, when pods run) still needs it
    const kube = await createKubeClient({kubeconfig})
    const names = nodes.map((n) => n.name)
    try {
      for (const n of nodes) await kube.create(fakeNode(n))
      await waitFor(async () => {
        const list = await kube.list('v1', 'Node')
        const ready = list.filter((n) => names.includes(n.metadata.name) && isSchedulable(n))
        return ready.length === names.length
      }, {what: `nodes ${names.join(', ')} Ready (KWOK)`, timeoutMs, intervalMs: 500, procs: all})
      // The serviceaccount controller in kube-controller-manager creates it: proof that kcm works.
      await waitFor(async () => !!(await kube.get({apiVersion: 'v1', kind: 'ServiceAccount', name: 'default', namespace: 'default'})), {
        what: 'the default service account (kube-controller-manager)', timeoutMs, intervalMs: 500, procs: all,
      })
      if (opts.pods && subnet) await warmPodIpPool(kube, names[0]!, {timeoutMs, procs: all})
    } finally {
      kube.close()
    }

    if (opts.pods && subnet) {
      const forwardPorts = [apiPort, ...(opts.pods.forwardPorts ?? [])]
      forwarders = await startHostForwarders(subnet.sockDir, forwardPorts)
      const {startPodRunner} = await import('./podrunner.js')
      podRunner = await startPodRunner({
        kubeconfig, binaryFor: opts.pods.binaryFor, runDir, subnetIndex: subnet.index, sockDir: subnet.sockDir, apiPort, forwardPorts,
      })
    }

    if (opts.signal?.aborted) throw new KpiError('failed', 'interrupted')
    opts.signal?.removeEventListener('abort', onAbort)
    return {kubeconfig, server, caFile: pki.ca.cert, runDir, logsDir, nodes: names, podCidr: subnet?.cidr, podRunner, stop, restartApiserver: (downMs) => restartApiserver(downMs)}
  } catch (e) {
    opts.signal?.removeEventListener('abort', onAbort)
    await stop()
    if (e instanceof KpiError) {
      throw new KpiError(e.kind, `control plane did not start: ${e.message}`, {
        hint: `${e.hint ? e.hint + '; ' : ''}logs in ${logsDir}`, cause: e, details: e.details,
      })
    }
    throw new KpiError('failed', `control plane did not start: ${e instanceof Error ? e.message : String(e)}`, {
      hint: `logs in ${logsDir}`, cause: e,
    })
  }
}


/** kube-controller-manager's controllers for kinds neither kpi nor kpack uses */
const UNUSED_CONTROLLERS = [
  'certificatesigningrequest-approving-controller', 'certificatesigningrequest-cleaner-controller', 'certificatesigningrequest-signing-controller',
  'cronjob-controller', 'daemonset-controller', 'device-taint-eviction-controller', 'disruption-controller', 'endpointslice-mirroring-controller',
  'ephemeral-volume-controller', 'horizontal-pod-autoscaler-controller', 'job-controller', 'legacy-serviceaccount-token-cleaner-controller',
  'persistentvolume-attach-detach-controller', 'persistentvolume-binder-controller', 'persistentvolume-expander-controller',
  'persistentvolume-protection-controller', 'persistentvolumeclaim-protection-controller', 'podgroup-protection-controller',
  'replicationcontroller-controller', 'resourceclaim-controller', 'resourcequota-controller', 'statefulset-controller',
  'ttl-after-finished-controller', 'validatingadmissionpolicy-status-controller', 'volumeattributesclass-protection-controller',
]

function fakeNode(n: FakeNode): LiveObject {
  const resources = {cpu: n.cpu, memory: n.memory, pods: String(n.pods ?? 110)}
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      annotations: {[KWOK_NODE_ANNOTATION]: 'fake', 'node.alpha.kubernetes.io/ttl': '0'},
      labels: {
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node-role.kubernetes.io/agent': '',
        type: 'kwok',
      },
    },
    // KWOK's node-initialize stage keeps a capacity the node was created with.
    status: {capacity: resources, allocatable: resources},
  }
}

/** Ready, and the node lifecycle controller has lifted its not-ready taint. */
function isSchedulable(n: LiveObject): boolean {
  const node = n as {status?: {conditions?: Array<{type: string; status: string}>}; spec?: {taints?: Array<{key: string}>}}
  const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false
  const tainted = node.spec?.taints?.some((t) => t.key.startsWith('node.kubernetes.io/not-ready') || t.key === 'node.kubernetes.io/unreachable') ?? false
  return ready && !tainted
}

interface Tls {
  ca: string
  cert?: string
  key?: string
}

function httpsGet(url: string, tls: Tls): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const req = request(url, {ca: tls.ca, cert: tls.cert, key: tls.key, timeout: 5000}, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => (res.statusCode === 200 ? resolveBody(body.trim()) : reject(new Error(`${url}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`))))
    })
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)))
    req.on('error', reject)
    req.end()
  })
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const req = httpRequest(url, {timeout: 5000}, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => (res.statusCode === 200 ? resolveBody(body.trim()) : reject(new Error(`${url}: HTTP ${res.statusCode}`))))
    })
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)))
    req.on('error', reject)
    req.end()
  })
}
