/**
 * One pod as one real process: its own network namespace holding the pod IP (netns.ts), its
 * environment and volumes as a kubelet would give them (podenv.ts), and the launcher (src/cli/sandbox-nsproc.ts)
 * that forwards the sandbox's loopback servers into the namespace, mounts the volumes privately and
 * runs the binary. In-cluster config: KUBERNETES_SERVICE_HOST/PORT name 127.0.0.1 and the
 * apiserver's port, which the namespace's loopback forwards to the host's apiserver.
 */
import type {CoreV1Api, V1Pod} from '@kubernetes/client-node'
import {mkdir, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {createPodNetns, deletePodNetns} from './netns.js'
import {nodeScriptArgs} from './node-script.js'
import {containerEnv, containerMounts} from './podenv.js'
import {startProcess, type Proc} from './procs.js'

/** What the pod launcher (src/cli/sandbox-nsproc.ts) reads from its spec file. */
export interface NsProcSpec {
  sockDir: string
  forwardPorts: number[]
  mounts: Array<{source: string; target: string; readOnly?: boolean}>
  cmd: string
  args: string[]
  env: Record<string, string>
  cwd: string
}

/** The real program a pod's image stands for. */
export interface PodBinary {
  /** which container of the pod it plays */
  container: string
  cmd: string
  /** replaces the container's args when set */
  args?: string[]
}

export interface PodProcOptions {
  core: CoreV1Api
  pod: V1Pod
  binary: PodBinary
  /** where pod directories (volumes, launcher spec) go */
  podsDir: string
  /** where `<namespace>_<pod>.log` goes */
  logsDir: string
  subnetIndex: number
  sockDir: string
  /** the apiserver's port on 127.0.0.1 */
  apiPort: number
  /** every loopback port pods may reach (the apiserver's included) */
  forwardPorts: number[]
}

export interface PodProc {
  uid: string
  name: string
  ip: string
  proc: Proc
  stop(): Promise<void>
}

export async function startPodProcess(o: PodProcOptions): Promise<PodProc> {
  const {pod} = o
  const ns = pod.metadata?.namespace ?? 'default'
  const name = pod.metadata?.name ?? ''
  const uid = pod.metadata?.uid ?? ''
  const ip = pod.status?.podIP ?? ''
  const container = pod.spec?.containers.find((c) => c.name === o.binary.container)
  if (!container) throw new Error(`pod ${ns}/${name} has no container ${o.binary.container}`)
  const podDir = join(o.podsDir, `${ns}_${name}_${uid.slice(0, 8)}`)
  await rm(podDir, {recursive: true, force: true})
  // a container's /tmp is its own and goes with it: kpack's controller writes a temporary file
  // per builder layer it makes, which would pile up in the host's /tmp
  await mkdir(join(podDir, 'tmp'), {recursive: true})
  const [env, mounts] = await Promise.all([containerEnv(o.core, pod, container), containerMounts(o.core, pod, container, podDir)])
  const spec: NsProcSpec = {
    sockDir: o.sockDir,
    forwardPorts: o.forwardPorts,
    mounts,
    cmd: o.binary.cmd,
    args: o.binary.args ?? container.args ?? [],
    env: {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: podDir,
      TMPDIR: join(podDir, 'tmp'),
      HOSTNAME: name,
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: String(o.apiPort),
      KUBERNETES_SERVICE_PORT_HTTPS: String(o.apiPort),
      ...env,
    },
    cwd: podDir,
  }
  const specFile = join(podDir, 'launch.json')
  await writeFile(specFile, JSON.stringify(spec), {mode: 0o600})
  const netns = await createPodNetns(o.subnetIndex, ip)
  let proc: Proc
  try {
    proc = await startProcess({
      name: `${ns}_${name}`,
      cmd: 'ip',
      args: ['netns', 'exec', netns.name, 'unshare', '--mount', '--propagation', 'private', process.execPath, ...nodeScriptArgs(import.meta.url, 'cli/sandbox-nsproc'), specFile],
      logDir: o.logsDir,
      env: {},
    })
  } catch (e) {
    await deletePodNetns(netns.name, netns.hostIf)
    throw e
  }
  let stopping: Promise<void> | undefined
  return {
    uid,
    name: `${ns}/${name}`,
    ip,
    proc,
    stop: () => {
      stopping ??= (async () => {
        await proc.stop(3000)
        await deletePodNetns(netns.name, netns.hostIf)
        // the token and Secret copies go with the pod
        await rm(podDir, {recursive: true, force: true})
      })()
      return stopping
    },
  }
}
