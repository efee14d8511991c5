/**
 * A throw-away PKI for the sandbox: a CA and certificates it signs, made with the openssl CLI
 * (Debian's openssl), written as PEM files under a directory. Keys are ECDSA P-256 unless asked
 * otherwise: a control plane needs ten, and RSA-2048 ones took 2.5-3.7 s of its start on 2 busy
 * cores, P-256 ones a few milliseconds each.
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

/** `ec`: ECDSA P-256; `rsa`: RSA-2048 (for what must sign RS256, as the registry's token server) */
export type KeyAlg = 'ec' | 'rsa'

const newKey = (alg: KeyAlg): string[] => (alg === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'])

export async function makeCA(dir: string, commonName = 'kpi sandbox CA'): Promise<CA> {
  await mkdir(dir, {recursive: true})
  const key = join(dir, 'ca.key')
  const cert = join(dir, 'ca.crt')
  await run('openssl', ['req', '-x509', ...newKey('ec'), '-nodes', '-keyout', key, '-out', cert,
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
  /** the key's algorithm, `ec` when unset */
  key?: KeyAlg
}

export async function issueCert(ca: CA, req: CertRequest): Promise<CertFiles> {
  const key = join(ca.dir, `${req.name}.key`)
  const csr = join(ca.dir, `${req.name}.csr`)
  const cert = join(ca.dir, `${req.name}.crt`)
  const ext = join(ca.dir, `${req.name}.ext`)
  const subj = `/CN=${req.commonName}` + (req.organizations ?? []).map((o) => `/O=${o}`).join('')
  const alg = req.key ?? 'ec'
  await run('openssl', ['req', ...newKey(alg), '-nodes', '-keyout', key, '-out', csr, '-subj', subj])
  const eku = req.usage === 'server' ? 'serverAuth' : req.usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth'
  const sans = [...(req.dnsNames ?? []).map((d) => `DNS:${d}`), ...(req.ips ?? []).map((i) => `IP:${i}`)]
  // an ECDSA key signs and never enciphers: RSA key exchange is what keyEncipherment is for
  const usage = alg === 'rsa' ? 'digitalSignature,keyEncipherment' : 'digitalSignature'
  const lines = ['basicConstraints=CA:FALSE', `keyUsage=critical,${usage}`, `extendedKeyUsage=${eku}`]
  if (sans.length) lines.push(`subjectAltName=${sans.join(',')}`)
  await writeFile(ext, lines.join('\n') + '\n')
  // a random serial per certificate: -CAcreateserial races on ca.srl when certificates are issued in parallel
  const serial = '0x' + randomBytes(16).toString('hex')
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial,
    '-out', cert, '-days', '3650', '-sha256', '-extfile', ext])
  return {cert, key, certPem: await readFile(cert, 'utf8')}
}

/** An ECDSA P-256 key pair for signing service-account tokens (ES256). */
export async function makeKeyPair(dir: string, name: string): Promise<{key: string; pub: string}> {
  const key = join(dir, `${name}.key`)
  const pub = join(dir, `${name}.pub`)
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key])
  await run('openssl', ['pkey', '-in', key, '-pubout', '-out', pub])
  return {key, pub}
}
