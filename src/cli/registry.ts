/** Builds the OCI client from the flags every registry-facing command shares. */
import {readFile} from 'node:fs/promises'
import {Flags} from '@oclif/core'
import {jsonEventLine} from './progress.js'
import {KpiError} from '../errors.js'
import {createRegistryClient, type RegistryClient} from '../oci/index.js'

export const registryFlags = {
  'plain-http': Flags.string({
    description: 'talk plain HTTP (no TLS) to this registry host[:port] (repeatable; loopback registries that answer plain HTTP need none)',
    multiple: true,
  }),
  concurrency: Flags.integer({description: 'parallel blob transfers', default: 8, min: 1, max: 64}),
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

const toldPlain = new Set<string>()

/**
 * Says, once per registry and process, that a loopback registry is talked to over plain HTTP
 * without --plain-http (on stderr: a line, or a JSON event with --json).
 */
export function plainHttpNotice(json: boolean | undefined): (registry: string) => void {
  return (registry) => {
    if (toldPlain.has(registry)) return
    toldPlain.add(registry)
    const message = `registry ${registry} answers plain HTTP; it is on this machine (loopback), so kpi talks HTTP to it`
    process.stderr.write(json ? jsonEventLine({type: 'info', message}) : `note: ${message}\n`)
  }
}

export async function registryClientFromFlags(flags: {
  'ca-cert'?: string[]
  'insecure-skip-tls-verify'?: boolean
  'plain-http'?: string[]
  concurrency?: number
  json?: boolean
}): Promise<RegistryClient> {
  const plain = new Set([...(flags['plain-http'] ?? []), ...(process.env.KPI_PLAIN_HTTP?.split(',').filter(Boolean) ?? [])])
  return createRegistryClient({
    caCerts: await readCaCerts(flags['ca-cert']),
    insecureSkipTlsVerify: flags['insecure-skip-tls-verify'] ?? false,
    plainHttp: (registry) => plain.has(registry),
    onPlainHttp: plainHttpNotice(flags.json),
    connections: Math.max(8, (flags.concurrency ?? 8) * 2),
  })
}
