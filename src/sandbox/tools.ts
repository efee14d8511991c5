/**
 * Where the Go-built tools that scripts/tools.sh caches live: <cache>/<tool>-<version>/bin/<tool>
 * in kpi's cache directory (src/cache-dir.ts: ~/.cache/kpi by default), with versions from
 * tools/versions.env, the one file both the script and this module read. Two tools hold several
 * binaries in one cache dir: kpack, one dir per version (kpack-<version>/bin/{controller,webhook}),
 * and cert-injection-webhook (bin/{webhook,setup-ca-certs}).
 */
import {accessSync, constants, readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {kpiCacheDir} from '../cache-dir.js'
import {KpiError} from '../errors.js'
import {packageRoot} from '../package-root.js'

export type ToolName =
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kubectl'
  | 'etcd'
  | 'kwok'
  | 'crane'
  | 'imgpkg'
  | 'kapp'
  | 'toxiproxy-server'
  | 'ggcr-registry'
  | 'kp'
  | 'helm'
  | 'regctl'
  | 'oras'

/** The versions.env key of each tool. */
const versionKey: Record<ToolName, string> = {
  'kube-apiserver': 'KUBERNETES_VERSION',
  'kube-controller-manager': 'KUBERNETES_VERSION',
  'kube-scheduler': 'KUBERNETES_VERSION',
  kubectl: 'KUBERNETES_VERSION',
  etcd: 'ETCD_VERSION',
  kwok: 'KWOK_VERSION',
  crane: 'CRANE_VERSION',
  imgpkg: 'IMGPKG_VERSION',
  kapp: 'KAPP_VERSION',
  'toxiproxy-server': 'TOXIPROXY_VERSION',
  // go-containerregistry's pkg/registry, from the module crane is built from, at the same pin
  // (with a -rN of its own: tools/ggcr-registry's revision)
  'ggcr-registry': 'GGCR_REGISTRY_VERSION',
  kp: 'KP_VERSION',
  helm: 'HELM_VERSION',
  regctl: 'REGCTL_VERSION',
  oras: 'ORAS_VERSION',
}

/** The binaries of kpack's release that kpi's platform runs as Deployments. */
export type KpackBinary = 'controller' | 'webhook'

/** The binaries of cert-injection-webhook: its webhook and the image its injected init container runs. */
export type CertInjectionBinary = 'webhook' | 'setup-ca-certs'


// src/sandbox/tools.ts and dist/sandbox/tools.js both sit two levels below the repository root.
const versionsFile = join(packageRoot(import.meta.url), 'tools', 'versions.env')

let cached: Record<string, string> | undefined

/** KEY=value lines of tools/versions.env ('#' comments and blank lines skipped). */
export function toolVersions(): Record<string, string> {
  if (cached) return cached
  let text: string
  try {
    text = readFileSync(versionsFile, 'utf8')
  } catch (e) {
    throw new KpiError('not-found', `cannot read ${versionsFile}`, {hint: 'run kpi from its source checkout', cause: e})
  }
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(\S+)\s*$/.exec(line)
    if (m) out[m[1]!] = m[2]!
  }
  cached = out
  return out
}

export function toolVersion(name: ToolName): string | undefined {
  return toolVersions()[versionKey[name]]
}

/** `<cache>/<tool>-<version>/bin/<binary>` when it is executable; else KpiError('not-found'). */
function cachedBinary(tool: string, version: string, binary: string): string {
  const path = join(kpiCacheDir(), `${tool}-${version}`, 'bin', binary)
  try {
    accessSync(path, constants.X_OK)
  } catch {
    const what = binary === tool ? tool : `${tool}'s ${binary}`
    throw new KpiError('not-found', `${what} ${version} not found at ${path}`, {hint: 'run bash scripts/tools.sh'})
  }
  return path
}

/** The versions.env value of `key`, or KpiError('not-found') naming the key. */
function pinned(key: string, what: string): string {
  const version = toolVersions()[key]
  if (!version) {
    throw new KpiError('not-found', `${what} is not built by scripts/tools.sh (no ${key} in tools/versions.env)`, {
      hint: 'add its version to tools/versions.env',
    })
  }
  return version
}

/** Absolute path of a cached tool binary; throws KpiError('not-found') when it is not built. */
export function toolPath(name: ToolName): string {
  return cachedBinary(name, pinned(versionKey[name], name), name)
}

/** The kpack versions scripts/tools.sh builds (KPACK_VERSIONS), e.g. ['v0.16.1', 'v0.17.2']. */
export function kpackVersions(): string[] {
  return pinned('KPACK_VERSIONS', 'kpack').split(',')
}

/**
 * kpack's controller or webhook of one kpack version ('0.17.2' or 'v0.17.2'), as kpack releases
 * it: the version must be one tools/versions.env pins, since each kpack version needs its own.
 */
export function kpackBinaryPath(version: string, binary: KpackBinary): string {
  const v = version.startsWith('v') ? version : `v${version}`
  const pins = kpackVersions()
  if (!pins.includes(v)) {
    throw new KpiError('not-found', `kpack ${v} is not built by scripts/tools.sh (KPACK_VERSIONS in tools/versions.env: ${pins.join(', ')})`, {
      hint: 'add it to KPACK_VERSIONS and run bash scripts/tools.sh platform',
    })
  }
  return cachedBinary('kpack', v, binary)
}

/** cert-injection-webhook's webhook or setup-ca-certs binary. */
export function certInjectionBinaryPath(binary: CertInjectionBinary): string {
  return cachedBinary('cert-injection-webhook', pinned('CERT_INJECTION_WEBHOOK_VERSION', 'cert-injection-webhook'), binary)
}

/**
 * The cache directory of a built tool, `<cache>/<tool>-<version>`: bin/ holds the binary, and data the
 * tool needs sits beside it (kwok: stages/, the node and pod lifecycle stages KWOK ships).
 */
export function toolHome(name: ToolName): string {
  return dirname(dirname(toolPath(name)))
}

/** Like toolPath, but undefined instead of throwing: for tests and benchmarks that skip without the tool. */
export function findTool(name: ToolName): string | undefined {
  try {
    return toolPath(name)
  } catch {
    return undefined
  }
}
