/** What every loopback registry of the sandbox needs, whichever implementation serves it. */
import {randomBytes} from 'node:crypto'
import {request as httpRequest} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {join} from 'node:path'
import {issueCert, makeCA, type CA} from './pki.js'

/** The fields every sandbox registry reports, whichever implementation serves it. */
export function loopbackRegistryFields(port: number, scheme: 'http' | 'https', name: string, ca: CA | undefined, dataDir: string) {
  const host = `127.0.0.1:${port}`
  return {host, url: `${scheme}://${host}`, name, caFile: ca?.cert, caPem: ca?.certPem, dataDir}
}

/** One GET /v2/: the status, or undefined when nothing answers yet. */
export function probeV2(url: string, caPem?: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const u = new URL('/v2/', url)
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {method: 'GET', ca: caPem, timeout: 2000}, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', () => resolve(undefined))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

/** A serving certificate for 127.0.0.1 and localhost (plus `hostnames`), from `tls.ca` or a new CA. */
export async function loopbackServingCert(dir: string, name: string, tls: {ca: CA} | true, hostnames: string[] = []): Promise<{ca: CA; cert: string; key: string}> {
  const ca = tls === true ? await makeCA(join(dir, `${name}-ca`), `kpi sandbox CA (${name})`) : tls.ca
  const {cert, key} = await issueCert(ca, {
    name: `${name}-${randomBytes(3).toString('hex')}`, commonName: '127.0.0.1',
    dnsNames: ['localhost', ...hostnames], ips: ['127.0.0.1'], usage: 'server',
  })
  return {ca, cert, key}
}
