/**
 * A throw-away PKI for the sandbox: a CA and certificates it signs, made with the openssl CLI
 * (Debian's openssl), written as PEM files under a directory.
 */
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'

const run = promisify(execFile)

export interface CertFiles {
  cert: string
  key: string
  /** PEM text of the certificate */
  certPem: string
}

export interface CA extends CertFiles {
  dir: string
}

export async function makeCA(dir: string, commonName = 'kpi sandbox CA'): Promise<CA> {
  await mkdir(dir, {recursive: true})
  const key = join(dir, 'ca.key')
  const cert = join(dir, 'ca.crt')
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '3650', '-subj', `/CN=${commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  return {dir, key, cert, certPem: await readFile(cert, 'utf8')}
}

export interface CertRequest {
  /** file name stem, e.g. `apiserver` */
  name: string
  commonName: string
  /** Subject organisation(s): Kubernetes reads them as groups (e.g. `system:masters`) */
  organizations?: string[]
  /** DNS names and IP addresses for a server certificate */
  dnsNames?: string[]
  ips?: string[]
  /** client, server or both */
  usage: 'server' | 'client' | 'both'
}

export async function issueCert(ca: CA, req: CertRequest): Promise<CertFiles> {
  const key = join(ca.dir, `${req.name}.key`)
  const csr = join(ca.dir, `${req.name}.csr`)
  const cert = join(ca.dir, `${req.name}.crt`)
  const ext = join(ca.dir, `${req.name}.ext`)
  const subj = `/CN=${req.commonName}` + (req.organizations ?? []).map((o) => `/O=${o}`).join('')
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', subj])
  const eku = req.usage === 'server' ? 'serverAuth' : req.usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth'
  const sans = [...(req.dnsNames ?? []).map((d) => `DNS:${d}`), ...(req.ips ?? []).map((i) => `IP:${i}`)]
  const lines = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', `extendedKeyUsage=${eku}`]
  if (sans.length) lines.push(`subjectAltName=${sans.join(',')}`)
  await writeFile(ext, lines.join('\n') + '\n')
  // a random serial per certificate: -CAcreateserial races on ca.srl when certificates are issued in parallel
  const serial = '0x' + randomBytes(16).toString('hex')
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial,
    '-out', cert, '-days', '3650', '-sha256', '-extfile', ext])
  return {cert, key, certPem: await readFile(cert, 'utf8')}
}

/** An RSA key pair for signing service-account tokens. */
export async function makeKeyPair(dir: string, name: string): Promise<{key: string; pub: string}> {
  const key = join(dir, `${name}.key`)
  const pub = join(dir, `${name}.pub`)
  await run('openssl', ['genrsa', '-out', key, '2048'])
  await run('openssl', ['rsa', '-in', key, '-pubout', '-out', pub])
  return {key, pub}
}
