/**
 * Private CA certificates and the HTTP proxy: how they reach the kpack controller (it talks to the
 * registry); build pods get them through cert-injection-webhook (cert-injection.ts).
 *
 * CA: Go's crypto/x509 (the controller is Go) reads the first of its known bundle files
 * (/etc/ssl/certs/ca-certificates.crt, ...) unless SSL_CERT_FILE is set, then every file in the
 * SSL_CERT_DIR directories, which replace its default directories. So kpi leaves SSL_CERT_FILE
 * alone, mounts the CAs in a directory of their own and sets SSL_CERT_DIR to Go's defaults plus
 * that directory: the system CAs stay trusted, nothing in the image is shadowed.
 *
 * Proxy: Go's ProxyFromEnvironment reads HTTP_PROXY/HTTPS_PROXY/NO_PROXY (and the lowercase forms,
 * which other tools prefer). Cluster-internal destinations always go into NO_PROXY so the
 * controller keeps reaching the apiserver and services. A proxy URL with user:password in it is a
 * credential: then the URLs live in a Secret and the env refers to it.
 */
import {isIP} from 'node:net'
import {inCidr, isCidr} from '../values/cidr.js'
import {KPACK_NAMESPACE as NS} from '../namespaces.js'
import {obj} from './meta.js'
import type {Values} from '../values/types.js'
import type {RenderedObject} from './types.js'

export const CA_CONFIGMAP = 'kpi-ca-certs'
export const CA_KEY = 'ca.crt'
export const CA_DIR = '/etc/ssl/kpi'
// Go's default certificate directories on Linux, kept so the system CAs stay trusted
export const GO_CERT_DIRS = ['/etc/ssl/certs', '/etc/pki/tls/certs']
export const PROXY_SECRET = 'kpi-proxy'


type EnvVar = Record<string, unknown>

export interface ControllerTrust {
  env: EnvVar[]
  volumes: Record<string, unknown>[]
  volumeMounts: Record<string, unknown>[]
}

/** PEM texts joined into one bundle file, each certificate block on its own lines. */
export function caBundle(caCerts: string[]): string {
  const blocks: string[] = []
  for (const pem of caCerts) {
    for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)) blocks.push(m[0].replace(/\r\n/g, '\n'))
  }
  return blocks.join('\n') + '\n'
}

/**
 * Whether Go's proxy rules (golang.org/x/net/http/httpproxy, as the kpack controller and the build
 * images' tools apply NO_PROXY) reach the registry `hostPort` directly over HTTPS: localhost and
 * loopback addresses always; `*`; an address equal to an IP entry or inside a CIDR entry; a name
 * matching a name entry or lying below it (`.name` and `*.name`: only below). An entry with a
 * port matches that port only (443 when the registry names none). Names never match addresses.
 */
export function bypassesProxy(hostPort: string, noProxy: string[]): boolean {
  const target = splitHostPort(hostPort.trim().toLowerCase())
  if (!target) return false
  const host = target.host
  const port = target.port ?? '443'
  const ip = isIP(host) !== 0
  if (host === 'localhost' || (ip && isLoopback(host))) return true
  for (const raw of noProxy) {
    const e = raw.trim().toLowerCase()
    if (!e) continue
    if (e === '*') return true
    if (isCidr(e)) {
      if (ip && inCidr(host, e)) return true
      continue
    }
    const entry = isIP(e) !== 0 ? {host: e, port: undefined} : splitHostPort(e)
    if (!entry?.host) continue
    if (entry.port && entry.port !== port) continue
    if (isIP(entry.host) !== 0) {
      if (ip && sameAddress(entry.host, host)) return true
      continue
    }
    if (ip) continue
    const name = entry.host.startsWith('*.') ? entry.host.slice(1) : entry.host
    if (name.startsWith('.') ? host.endsWith(name) : host === name || host.endsWith(`.${name}`)) return true
  }
  return false
}

/** `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address */
function splitHostPort(s: string): {host: string; port?: string} | undefined {
  if (isIP(s) === 6) return {host: s}
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(s)
  return m ? {host: (m[1] ?? m[2])!, port: m[3]} : undefined
}

const isLoopback = (ip: string): boolean => (isIP(ip) === 4 ? ip.startsWith('127.') : sameAddress(ip, '::1'))

const sameAddress = (a: string, b: string): boolean => inCidr(b, `${a}/${isIP(a) === 6 ? 128 : 32}`)

/** NO_PROXY entries: the user's, then the cluster-internal ones, without duplicates. */
export function noProxyList(values: Values): string[] {
  const domain = values.cluster.domain
  const internal = [
    'localhost',
    '127.0.0.1',
    '::1',
    'kubernetes',
    'kubernetes.default',
    'kubernetes.default.svc',
    `kubernetes.default.svc.${domain}`,
    '.svc',
    `.${domain}`,
    ...values.cluster.serviceCIDR,
    ...values.cluster.podCIDR,
  ]
  const seen = new Set<string>()
  const out: string[] = []
  for (const e of [...(values.proxy?.noProxy ?? []), ...internal]) {
    const k = e.toLowerCase()
    if (!seen.has(k)) {
      seen.add(k)
      out.push(e)
    }
  }
  return out
}

export const hasProxy = (v: Values): boolean => !!(v.proxy?.httpProxy || v.proxy?.httpsProxy)
export const proxyHasCredentials = (v: Values): boolean =>
  [v.proxy?.httpProxy, v.proxy?.httpsProxy].some((u) => {
    if (!u) return false
    const url = new URL(u)
    return !!(url.username || url.password)
  })

/** The proxy settings by env name (HTTP_PROXY, HTTPS_PROXY, NO_PROXY). */
function proxySettings(v: Values): Array<[string, string]> {
  if (!hasProxy(v)) return []
  const out: Array<[string, string]> = []
  if (v.proxy?.httpProxy) out.push(['HTTP_PROXY', v.proxy.httpProxy])
  if (v.proxy?.httpsProxy) out.push(['HTTPS_PROXY', v.proxy.httpsProxy])
  out.push(['NO_PROXY', noProxyList(v).join(',')])
  return out
}

/** Env vars carrying the proxy, upper and lower case, named `prefix + name`: values, or Secret refs. */
function proxyEnv(v: Values, prefix = '', lowercase = true): EnvVar[] {
  const secret = proxyHasCredentials(v)
  const env: EnvVar[] = []
  for (const [name, value] of proxySettings(v)) {
    const val = secret ? {valueFrom: {secretKeyRef: {name: PROXY_SECRET, key: name}}} : {value}
    env.push({name: prefix + name, ...val})
    if (lowercase) env.push({name: prefix + name.toLowerCase(), ...val})
  }
  return env
}

/** The config-stage objects CA and proxy need (a ConfigMap of CAs, a Secret for a proxy with credentials). */
export function trustConfig(v: Values): RenderedObject[] {
  const out: RenderedObject[] = []
  if (v.caCerts.length) out.push(obj('config', 'v1', 'ConfigMap', {name: CA_CONFIGMAP, namespace: NS}, {data: {[CA_KEY]: caBundle(v.caCerts)}}))
  if (hasProxy(v) && proxyHasCredentials(v)) {
    out.push(
      obj('config', 'v1', 'Secret', {name: PROXY_SECRET, namespace: NS}, {
        type: 'Opaque',
        data: Object.fromEntries(proxySettings(v).map(([k, val]) => [k, Buffer.from(val).toString('base64')])),
      }),
    )
  }
  return out
}

export function controllerTrust(v: Values): ControllerTrust {
  const t: ControllerTrust = {env: proxyEnv(v), volumes: [], volumeMounts: []}
  if (v.caCerts.length) {
    t.env.push({name: 'SSL_CERT_DIR', value: [...GO_CERT_DIRS, CA_DIR].join(':')})
    t.volumes.push({name: CA_CONFIGMAP, configMap: {name: CA_CONFIGMAP}})
    t.volumeMounts.push({name: CA_CONFIGMAP, mountPath: CA_DIR, readOnly: true})
  }
  return t
}
