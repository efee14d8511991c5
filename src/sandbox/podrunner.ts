/**
 * The sandbox's kubelet for the pods that matter: KWOK plays every pod (schedules it, gives it an
 * address from the sandbox's pod subnet, marks it Running and Ready), and for a pod whose image
 * stands for a real program (the image table: kpack's controller and webhook, cert-injection-webhook)
 * the runner runs that program as the pod (podproc.ts). It follows the pods: a new pod starts a
 * process, a pod that is deleted (a rollout replacing it, a scale-down) stops its process, a
 * process that exits is started again after a pause, as a kubelet restarts a container.
 */
import type {V1Pod} from '@kubernetes/client-node'
import {appendFile, mkdir} from 'node:fs/promises'
import {join} from 'node:path'
import {startPodProcess, type PodBinary, type PodProc} from './podproc.js'
import {holdPod, isHeld, releasePod} from './podhold.js'
import {accepts, isPodReady, setPodReady, tcpPorts} from './podready.js'

export interface PodRunnerOptions {
  kubeconfig: string
  /** the real program for a container image, or undefined: KWOK alone plays it */
  binaryFor(image: string): Omit<PodBinary, 'container'> | undefined
  /** pod directories go to `<runDir>/pods`, logs to `<runDir>/logs/pods/<ns>_<pod>.log` */
  runDir: string
  subnetIndex: number
  sockDir: string
  apiPort: number
  forwardPorts: number[]
  /** how often the pods are listed while a pod waits for its start, restart or readiness, 500 ms when unset */
  intervalMs?: number
}

export interface RunningPod {
  /** namespace/name */
  name: string
  uid: string
  ip: string
  pid: number
  logFile: string
  restarts: number
}

export interface PodRunner {
  /** the pods that run a process right now */
  running(): RunningPod[]
  /** the runner's own log: why a pod could not start, exits, restarts */
  logFile: string
  stop(): Promise<void>
}

interface Entry {
  pod: V1Pod
  binary: PodBinary
  proc?: PodProc
  restarts: number
  /** no new start before this time (after a failed start or an exit) */
  notBefore: number
  startedAt?: number
}

const RESTART_PAUSE_MS = 2000
/**
 * With nothing waiting, the runner lists pods when a watch event says something changed, and at
 * this interval should the watch have missed one. Listing every 500 ms instead cost the apiserver
 * about 5% of a core for as long as a sandbox ran (58 LISTs per 30 s idle), in every test file.
 */
const IDLE_LIST_MS = 10_000
const REWATCH_MS = 1000

function binaryOf(pod: V1Pod, binaryFor: PodRunnerOptions['binaryFor']): PodBinary | undefined {
  for (const c of pod.spec?.containers ?? []) {
    const b = c.image ? binaryFor(c.image) : undefined
    if (b) return {...b, container: c.name}
  }
  return undefined
}

/** Running on a node with an address, not being deleted: the state in which a kubelet runs it. */
function runnable(pod: V1Pod): boolean {
  return !!pod.status?.podIP && !pod.metadata?.deletionTimestamp && pod.status?.phase === 'Running'
}

export async function startPodRunner(o: PodRunnerOptions): Promise<PodRunner> {
  // imported, not required: the client is an ES module only, and kpi's CLI is one CommonJS bundle
  const {CoreV1Api, KubeConfig, Watch} = await import('@kubernetes/client-node')
  const kc = new KubeConfig()
  kc.loadFromFile(o.kubeconfig)
  const core = kc.makeApiClient(CoreV1Api)
  const podsDir = join(o.runDir, 'pods')
  const logsDir = join(o.runDir, 'logs', 'pods')
  const logFile = join(o.runDir, 'logs', 'podrunner.log')
  await mkdir(logsDir, {recursive: true})
  await mkdir(podsDir, {recursive: true})
  const log = (msg: string) => appendFile(logFile, `${new Date().toISOString()} ${msg}\n`).catch(() => {})

  const entries = new Map<string, Entry>()
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let tick: Promise<void> = Promise.resolve()

  const start = async (uid: string, e: Entry) => {
    const name = `${e.pod.metadata?.namespace}/${e.pod.metadata?.name}`
    try {
      // held before it runs: from here on the pod leaves the API only after its process (podhold.ts)
      if (!(await holdPod(core, e.pod))) return
      e.proc = await startPodProcess({
        core, pod: e.pod, binary: e.binary, podsDir, logsDir,
        subnetIndex: o.subnetIndex, sockDir: o.sockDir, apiPort: o.apiPort, forwardPorts: o.forwardPorts,
      })
      e.startedAt = Date.now()
      await log(`started ${name} (${e.binary.cmd}) at ${e.proc.ip}, pid ${e.proc.proc.pid}`)
      const proc = e.proc
      void proc.proc.exited.then(async (ex) => {
        if (entries.get(uid)?.proc !== proc || stopped) return
        await log(`${name} exited (${ex.signal ?? `code ${ex.code}`}); restarting in ${RESTART_PAUSE_MS} ms`)
        await proc.stop()
        e.proc = undefined
        await setPodReady(core, e.pod, false).catch((err: unknown) => log(`cannot mark ${name} not ready: ${String(err)}`))
        e.restarts++
        e.notBefore = Date.now() + RESTART_PAUSE_MS
        poke()
      })
    } catch (err) {
      await log(`cannot start ${name}: ${err instanceof Error ? err.message : String(err)}`)
      e.notBefore = Date.now() + RESTART_PAUSE_MS
    }
  }

  /** The readiness probe: the container's TCP ports accept connections; without ports, a second of running. */
  const probe = async (e: Entry): Promise<boolean> => {
    const container = e.pod.spec?.containers.find((c) => c.name === e.binary.container)
    const ports = tcpPorts(container)
    if (!ports.length) return Date.now() - (e.startedAt ?? Date.now()) >= 1000
    for (const p of ports) if (!(await accepts(e.proc!.ip, p))) return false
    return true
  }

  /** Brings processes in line with the pods; true while a pod waits for a start, a restart or readiness. */
  const reconcile = async (): Promise<boolean> => {
    let pods: V1Pod[]
    try {
      pods = (await core.listPodForAllNamespaces({fieldSelector: 'status.phase=Running'})).items
    } catch (err) {
      await log(`cannot list pods: ${err instanceof Error ? err.message : String(err)}`)
      return true
    }
    const wanted = new Map<string, {pod: V1Pod; binary: PodBinary}>()
    const readyNow: V1Pod[] = []
    const leaving: V1Pod[] = []
    for (const pod of pods) {
      if (pod.metadata?.deletionTimestamp && isHeld(pod)) leaving.push(pod)
      if (!runnable(pod)) continue
      const binary = binaryOf(pod, o.binaryFor)
      if (binary && pod.metadata?.uid) wanted.set(pod.metadata.uid, {pod, binary})
      // KWOK alone plays it: ready at once, as KWOK's own stage would have made it
      else if (!binary && !isPodReady(pod)) readyNow.push(pod)
    }
    let waiting = false
    await Promise.all(readyNow.map((p) => setPodReady(core, p, true).catch((err: unknown) => {
      waiting = true
      return log(`cannot mark ${p.metadata?.namespace}/${p.metadata?.name} ready: ${String(err)}`)
    })))
    // stop first: a new pod may get the address a deleted one had
    for (const [uid, e] of entries) {
      if (wanted.has(uid)) continue
      // listed as running until its process and namespace are gone
      if (e.proc) await e.proc.stop()
      // said even when no process runs (one that died waits out its pause): a reader of this log
      // can then tell a pod deleted before its restart from a restart that never came
      await log(`stopped ${e.pod.metadata?.namespace}/${e.pod.metadata?.name}: the pod is gone or being deleted`)
      entries.delete(uid)
    }
    // every held pod being deleted has no process now (also one a previous runner held)
    await Promise.all(leaving.map((p) => releasePod(core, p).catch((err: unknown) => log(`cannot let ${p.metadata?.namespace}/${p.metadata?.name} go: ${String(err)}`))))
    for (const [uid, w] of wanted) {
      let e = entries.get(uid)
      if (!e) {
        e = {...w, restarts: 0, notBefore: 0}
        entries.set(uid, e)
      }
      e.pod = w.pod
      if (!e.proc && Date.now() >= e.notBefore && !stopped) await start(uid, e)
      if (!e.proc || isPodReady(e.pod)) {
        waiting ||= !e.proc
        continue
      }
      const marked = (await probe(e)) && await setPodReady(core, e.pod, true).then(() => true, async (err: unknown) => {
        await log(`cannot mark ${e.proc?.name} ready: ${String(err)}`)
        return false
      })
      waiting ||= !marked
    }
    return waiting
  }

  // A reconcile at a time; a change seen during one asks for another right after it.
  let dirty = false
  let wake: (() => void) | undefined
  const poke = (): void => {
    dirty = true
    wake?.()
  }
  const loop = async (): Promise<void> => {
    while (!stopped) {
      dirty = false
      tick = reconcile().then((waiting) => new Promise<void>((resolve) => {
        if (dirty || stopped) return resolve()
        wake = resolve
        timer = setTimeout(resolve, waiting ? (o.intervalMs ?? 500) : IDLE_LIST_MS)
        timer.unref()
      })).finally(() => {
        wake = undefined
        if (timer) clearTimeout(timer)
      })
      await tick
    }
  }

  // any change to any pod asks for a reconcile; a watch that ends is started again
  let watching: AbortController | undefined
  const watch = (): void => {
    if (stopped) return
    const again = (err: unknown): void => {
      if (stopped) return
      if (err) void log(`pod watch ended: ${err instanceof Error ? err.message : String(err)}`)
      poke()
      setTimeout(watch, REWATCH_MS).unref()
    }
    new Watch(kc).watch('/api/v1/pods', {}, () => poke(), again).then((c) => {
      watching = c
      if (stopped) c.abort()
    }, again)
  }
  watch()
  void loop()

  return {
    logFile,
    running: () => [...entries.entries()].filter(([, e]) => e.proc).map(([uid, e]) => ({
      name: e.proc!.name, uid, ip: e.proc!.ip, pid: e.proc!.proc.pid, logFile: e.proc!.proc.logFile, restarts: e.restarts,
    })),
    stop: async () => {
      stopped = true
      watching?.abort()
      wake?.()
      // a reconcile waiting on the API server must not hold the teardown: the processes go anyway
      await Promise.race([tick.catch(() => {}), new Promise((r) => setTimeout(r, 10_000).unref())])
      await Promise.all([...entries.values()].map((e) => e.proc?.stop()))
      entries.clear()
    },
  }
}
