/** Builds the OCI client from the flags every registry-facing command shares. */
import {readFile} from 'node:fs/promises'
import {Flags} from '@oclif/core'
import {KpiError} from '../errors.js'
import {createRegistryClient, type RegistryClient} from '../oci/index.js'

export const registryFlags = {
  'plain-http': Flags.string({
    description: 'talk plain HTTP (no TLS) to this registry host[:port] (repeatable; for loopback test registries)',
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

export async function registryClientFromFlags(flags: {
  'ca-cert'?: string[]
  'insecure-skip-tls-verify'?: boolean
  'plain-http'?: string[]
  concurrency?: number
}): Promise<RegistryClient> {
  const plain = new Set([...(flags['plain-http'] ?? []), ...(process.env.KPI_PLAIN_HTTP?.split(',').filter(Boolean) ?? [])])
  return createRegistryClient({
    caCerts: await readCaCerts(flags['ca-cert']),
    insecureSkipTlsVerify: flags['insecure-skip-tls-verify'] ?? false,
    plainHttp: (registry) => plain.has(registry),
    connections: Math.max(8, (flags.concurrency ?? 8) * 2),
  })
}
