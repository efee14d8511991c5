/**
 * Where the Go-built tools that scripts/tools.sh caches live: ~/.cache/kpi/<tool>-<version>/bin/<tool>
 * (KPI_CACHE_DIR overrides ~/.cache/kpi), with versions from tools/versions.env, the one file both
 * the script and this module read.
 */
import {accessSync, constants, readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {KpiError} from '../errors.js'

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

/** The versions.env key of each tool; imgpkg and kapp have none while the Go proxy does not serve them. */
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
  'ggcr-registry': 'CRANE_VERSION',
}

// src/sandbox/tools.ts and dist/sandbox/tools.js both sit two levels below the repository root.
const versionsFile = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'versions.env')

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

export function toolsCacheDir(): string {
  return process.env.KPI_CACHE_DIR || join(homedir(), '.cache', 'kpi')
}

export function toolVersion(name: ToolName): string | undefined {
  return toolVersions()[versionKey[name]]
}

/** Absolute path of a cached tool binary; throws KpiError('not-found') when it is not built. */
export function toolPath(name: ToolName): string {
  const version = toolVersion(name)
  if (!version) {
    throw new KpiError('not-found', `${name} is not built by scripts/tools.sh (no ${versionKey[name]} in tools/versions.env)`, {
      hint: 'its Go module is not reachable from this machine; skip what needs it',
    })
  }
  const path = join(toolsCacheDir(), `${name}-${version}`, 'bin', name)
  try {
    accessSync(path, constants.X_OK)
  } catch {
    throw new KpiError('not-found', `${name} ${version} not found at ${path}`, {hint: 'run bash scripts/tools.sh'})
  }
  return path
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
