/** Builds the OCI client from the flags every registry-facing command shares. */
import {readFile} from 'node:fs/promises'
import {Flags} from '@oclif/core'
import {jsonEventLine} from './progress.js'
import {KpiError} from '../errors.js'
import {parseDuration} from './duration.js'
import {createRegistryClient, credentialResolver, hasUnscopedEnvCredentials, type RegistryClient} from '../oci/index.js'

export const registryFlags = {
  'plain-http': Flags.string({
    description: 'talk plain HTTP (no TLS) to this registry host[:port] (repeatable; loopback registries that answer plain HTTP need none)',
    multiple: true,
  }),
  concurrency: Flags.integer({description: 'parallel blob transfers (an archive write starts with 4, and runs this many once the source shows it is the slow side)', default: 8, min: 1, max: 64}),
  'insecure-registry': Flags.string({
    description: 'do not verify the TLS certificate of this registry host[:port] (repeatable; unsafe: a warning is printed on every run)',
    multiple: true,
  }),
  'registry-timeout': Flags.string({
    description: 'how long a registry may stay silent before a request fails, e.g. 30s or 2m (default 60s; env KPI_REGISTRY_TIMEOUT)',
  }),
}

export async function readCaCerts(files: string[] | undefined): Promise<string[]> {
  const out: string[] = []
  for (const f of files ?? []) {
    let pem: string
    try {
      pem = await readFile(f, 'utf8')
    } catch {
      throw new KpiError('input', `--ca-cert ${f}: cannot read the file`, {hint: 'give the path of a PEM file with the registry CA certificate'})
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new KpiError('input', `--ca-cert ${f}: no PEM certificate in the file`, {hint: 'the file must contain -----BEGIN CERTIFICATE----- blocks'})
    }
    out.push(pem)
  }
  return out
}

/** A warning on stderr: a line, or with --json a warning event (stderr then carries only JSON lines, docs/json.md). */
export function warn(json: boolean | undefined, message: string): void {
  process.stderr.write(json ? jsonEventLine({type: 'warning', message}) : `Warning: ${message}\n`)
}

/** A note on stderr: a line, or with --json an info event. */
function note(json: boolean | undefined, message: string): void {
  process.stderr.write(json ? jsonEventLine({type: 'info', message}) : `note: ${message}\n`)
}

/**
 * How long a registry may stay silent: --registry-timeout, else KPI_REGISTRY_TIMEOUT (set but
 * empty is unset, as for the shell's ${VAR:-default}); undefined for the client's default.
 */
export const registryTimeoutMs = (flag?: string): number | undefined =>
  flag !== undefined ? parseDuration(flag, '--registry-timeout') : parseDuration(process.env.KPI_REGISTRY_TIMEOUT || undefined, 'KPI_REGISTRY_TIMEOUT')

/** the hosts named plain HTTP: --plain-http (repeated) and KPI_PLAIN_HTTP (comma-separated) */
export const plainHttpHosts = (flags: {'plain-http'?: string[]}): Set<string> =>
  new Set([...(flags['plain-http'] ?? []), ...(process.env.KPI_PLAIN_HTTP?.split(',').map((h) => h.trim()).filter(Boolean) ?? [])])

const toldPlain = new Set<string>()

/**
 * Says, once per registry and process, that a loopback registry is talked to over plain HTTP
 * without --plain-http (on stderr: a line, or a JSON event with --json).
 */
export function plainHttpNotice(json: boolean | undefined): (registry: string) => void {
  return (registry) => {
    if (toldPlain.has(registry)) return
    toldPlain.add(registry)
    note(json, `registry ${registry} answers plain HTTP; it is on this machine (loopback), so kpi talks HTTP to it`)
  }
}

/**
 * TLS verification is on for every registry unless the user turned it off, per registry with
 * --insecure-registry HOST or for all with --insecure-skip-tls-verify; each run says so on stderr.
 */
export function tlsSkipFromFlags(flags: {'insecure-skip-tls-verify'?: boolean; 'insecure-registry'?: string[]; json?: boolean}): {
  insecureSkipTlsVerify: boolean
  insecureRegistry?: (registry: string) => boolean
} {
  const hosts = new Set(flags['insecure-registry'] ?? [])
  if (flags['insecure-skip-tls-verify']) {
    warn(flags.json, 'TLS certificates of every registry are not verified (--insecure-skip-tls-verify): anyone on the network path can impersonate them')
    return {insecureSkipTlsVerify: true}
  }
  for (const h of hosts) {
    warn(flags.json, `the TLS certificate of registry ${h} is not verified (--insecure-registry): anyone on the network path can impersonate it`)
  }
  return {insecureSkipTlsVerify: false, ...(hosts.size ? {insecureRegistry: (r: string) => hosts.has(r)} : {})}
}

/**
 * The client for a command's registries. `writesTo`: the registry the command writes to, the one
 * KPI_REGISTRY_USERNAME/PASSWORD without KPI_REGISTRY_HOSTNAME are for; a command that writes to
 * none says on stderr that it leaves them unused.
 */
export async function registryClientFromFlags(flags: {
  'ca-cert'?: string[]
  'insecure-skip-tls-verify'?: boolean
  'insecure-registry'?: string[]
  'plain-http'?: string[]
  concurrency?: number
  json?: boolean
  'registry-timeout'?: string
}, writesTo?: string): Promise<RegistryClient> {
  if (writesTo === undefined && hasUnscopedEnvCredentials()) {
    note(flags.json, 'KPI_REGISTRY_USERNAME/KPI_REGISTRY_PASSWORD have no KPI_REGISTRY_HOSTNAME and this command writes to no registry, so they are not used; set KPI_REGISTRY_HOSTNAME to the registry they are for')
  }
  const plain = plainHttpHosts(flags)
  return createRegistryClient({
    caCerts: await readCaCerts(flags['ca-cert']),
    ...tlsSkipFromFlags(flags),
    plainHttp: (registry) => plain.has(registry),
    credentials: credentialResolver({unscopedEnvFor: writesTo}),
    onPlainHttp: plainHttpNotice(flags.json),
    connections: Math.max(8, (flags.concurrency ?? 8) * 2),
    timeoutMs: registryTimeoutMs(flags['registry-timeout']),
  })
}
