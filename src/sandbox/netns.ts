/**
 * A network namespace per pod process, so a pod's address is real: `ip netns add`, a veth pair with
 * the pod IP on the namespace side (named eth0 there) and a /32 route to it on the host side. The
 * apiserver reaches webhooks at their pod IP (aggregator routing sends webhook calls to endpoint
 * addresses); pods reach the host's loopback servers only through the forwarders of src/cli/sandbox-nsproc.ts.
 *
 * Names carry the subnet index (see podnet.ts) and the pod IP's last octet: netns `kpi-<i>-<k>`,
 * host veth `kpi<i>-<k>` (at most 10 characters: IFNAMSIZ allows 15).
 */
import {execFile} from 'node:child_process'
import {promisify} from 'node:util'
import {KpiError} from '../errors.js'

const run = promisify(execFile)

export interface PodNetns {
  name: string
  hostIf: string
  ip: string
}

async function ip(args: string[]): Promise<string> {
  try {
    const {stdout} = await run('ip', args, {timeout: 15_000})
    return stdout
  } catch (e) {
    const err = e as {stderr?: string; message: string}
    throw new KpiError('failed', `ip ${args.join(' ')}: ${(err.stderr || err.message).trim()}`, {
      hint: 'the sandbox runs pods in network namespaces: it needs root and iproute2',
      cause: e,
    })
  }
}

/**
 * Pods run in network namespaces the sandbox makes (`ip netns add`, veths, routes) and pod subnets
 * are locked under /run/kpi-sandbox: both need root. Checked before anything starts, since without
 * it a start failed late with `EACCES ... /run/kpi-sandbox/N.lock` and no word of root.
 */
export function requireRoot(what: string): void {
  if (process.getuid && process.getuid() !== 0) {
    throw new KpiError('usage', `${what} needs root: it runs kpack's pods in network namespaces of their own`, {
      hint: 'run it as root (e.g. with sudo)',
    })
  }
}

export function netnsNames(index: number, podIp: string): {name: string; hostIf: string} {
  const k = podIp.split('.')[3]
  return {name: `kpi-${index}-${k}`, hostIf: `kpi${index}-${k}`}
}

export async function createPodNetns(index: number, podIp: string): Promise<PodNetns> {
  const {name, hostIf} = netnsNames(index, podIp)
  // a namespace left by a pod that had this address before is removed first
  await deletePodNetns(name, hostIf)
  try {
    await ip(['netns', 'add', name])
    await ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name])
    await ip(['-n', name, 'link', 'set', 'lo', 'up'])
    await ip(['-n', name, 'addr', 'add', `${podIp}/32`, 'dev', 'eth0'])
    await ip(['-n', name, 'link', 'set', 'eth0', 'up'])
    // replies go back to whatever host address called (the apiserver's source address)
    await ip(['-n', name, 'route', 'add', 'default', 'dev', 'eth0'])
    await ip(['link', 'set', hostIf, 'up'])
    await ip(['route', 'add', `${podIp}/32`, 'dev', hostIf])
  } catch (e) {
    await deletePodNetns(name, hostIf)
    throw e
  }
  return {name, hostIf, ip: podIp}
}

/** Kills what still runs in the namespace, then removes it and the host veth (which takes the route). */
export async function deletePodNetns(name: string, hostIf: string): Promise<void> {
  const pids = await ip(['netns', 'pids', name]).catch(() => '')
  for (const p of pids.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL')
    } catch {
      // gone
    }
  }
  await ip(['netns', 'del', name]).catch(() => {})
  await ip(['link', 'del', hostIf]).catch(() => {})
}

/** Removes every namespace and veth of subnet index i: what a crashed sandbox left behind. */
export async function cleanNetworkIndex(index: number): Promise<void> {
  const nsPrefix = `kpi-${index}-`
  const ifPrefix = `kpi${index}-`
  const namespaces = (await ip(['netns', 'list']).catch(() => ''))
    .split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(nsPrefix))
  const links = (await ip(['-o', 'link', 'show']).catch(() => ''))
    .split('\n').map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(ifPrefix))
  for (const n of namespaces) await deletePodNetns(n, `${ifPrefix}${n.slice(nsPrefix.length)}`)
  for (const l of links) await ip(['link', 'del', l]).catch(() => {})
}
