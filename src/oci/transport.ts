/**
 * Connections to registries: which hosts are reached directly (over wire.ts) and which through a
 * proxy (HTTP(S)_PROXY/NO_PROXY, over an undici dispatcher made only then: a keep-alive pool per
 * origin, bounded), TLS with the system CAs plus the user's, and the mapping of socket and TLS
 * failures to one clear KpiError.
 */
import {readFileSync} from 'node:fs'
import {createSecureContext, rootCertificates, type SecureContext} from 'node:tls'
import type {Dispatcher as DispatcherType} from 'undici'
import {KpiError} from '../errors.js'
import {DOCKER_HUB} from './reference.js'
import {errorCodes} from './retry.js'
import {undici} from './undici.js'

export interface ProxyOptions {
  httpProxy?: string
  httpsProxy?: string
  /** comma-separated hosts (and host:port) that bypass the proxy; loopback always does */
  noProxy?: string
}

export interface TransportOptions {
  caCerts?: string[]
  insecureSkipTlsVerify?: boolean
  /** registries (host[:port]) whose certificates are not verified, each named explicitly by the user */
  insecureRegistry?: (host: string) => boolean
  /** connections per origin */
  connections?: number
  /** silence allowed from a registry: waiting for response headers, or between body bytes */
  timeoutMs?: number
  /** proxy settings; default from HTTP_PROXY/HTTPS_PROXY/NO_PROXY (either case) */
  proxy?: ProxyOptions
  env?: NodeJS.ProcessEnv
}

/** Host without port or brackets: `[::1]:5000` -> `::1`, `127.0.0.1:5000` -> `127.0.0.1`. */
export function hostOnly(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'))
  const i = registry.lastIndexOf(':')
  return (i === -1 ? registry : registry.slice(0, i)).toLowerCase()
}

/** Registries on this machine: localhost, *.localhost, 127.0.0.0/8 and ::1. */
export function isLoopbackRegistry(registry: string): boolean {
  const h = hostOnly(registry)
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::1'
}

/** Base URL of a registry's API; Docker Hub's API lives on registry-1.docker.io. */
export function registryBaseUrl(registry: string, plainHttp: boolean): string {
  const host = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry
  return `${plainHttp ? 'http' : 'https'}://${host}`
}

function extraCaFromEnv(env: NodeJS.ProcessEnv): string[] {
  // passing `ca` replaces node's default store, which includes NODE_EXTRA_CA_CERTS: keep it
  const file = env.NODE_EXTRA_CA_CERTS
  if (!file) return []
  try {
    return [readFileSync(file, 'utf8')]
  } catch {
    return []
  }
}

/**
 * The trust store is built once into a SecureContext: passing `ca` strings instead makes every
 * new connection parse the ~140 system roots again (measured: TLS relocations 10x slower).
 */
export function tlsOptions(opts: TransportOptions): {secureContext?: SecureContext; rejectUnauthorized: boolean} {
  const rejectUnauthorized = !opts.insecureSkipTlsVerify
  if (!opts.caCerts?.length) return {rejectUnauthorized}
  return {secureContext: withExtraCas(opts.caCerts, opts.env ?? process.env), rejectUnauthorized}
}

/**
 * A context trusting node's store (system roots and NODE_EXTRA_CA_CERTS) plus `caCerts`. Node's
 * own contexts share that store, parsed once per process; its native handle adds certificates to
 * a copy of it without parsing the roots again. Passing `ca` would parse every root from PEM
 * again (measured: 52 -> 2 ms of CPU at every start with NODE_EXTRA_CA_CERTS set, 52 -> 25
 * without). The documented way is kept for a node whose handle lacks addCACert.
 */
function withExtraCas(caCerts: string[], env: NodeJS.ProcessEnv): SecureContext {
  const base = createSecureContext()
  const handle = (base as SecureContext & {context?: {addCACert?: (pem: string) => void}}).context
  if (typeof handle?.addCACert === 'function') {
    for (const pem of caCerts) handle.addCACert(pem)
    return base
  }
  return createSecureContext({ca: [...rootCertificates, ...extraCaFromEnv(env), ...caCerts]})
}

function proxySettings(opts: TransportOptions): ProxyOptions | undefined {
  const env = opts.env ?? process.env
  const p: ProxyOptions = {
    httpProxy: opts.proxy?.httpProxy ?? env.http_proxy ?? env.HTTP_PROXY,
    httpsProxy: opts.proxy?.httpsProxy ?? env.https_proxy ?? env.HTTPS_PROXY,
    noProxy: opts.proxy?.noProxy ?? env.no_proxy ?? env.NO_PROXY,
  }
  return p.httpProxy || p.httpsProxy ? p : undefined
}

/**
 * A registry silent this long has stalled (undici's own default is 5 minutes, and idempotent
 * requests are retried, so a stalled link would hold a run for half an hour without a word).
 */
export const DEFAULT_REGISTRY_TIMEOUT_MS = 60_000

type TlsOptions = ReturnType<typeof tlsOptions>

/**
 * How a client reaches a host (host[:port]), for undici's dispatcher and for wire.ts alike: built
 * once per client, so the trust store is built once.
 */
export interface ConnectionPolicy {
  /** TLS options for every host not named insecure */
  verified: TlsOptions
  /** TLS options: unverified only for a registry the user named insecure */
  tlsFor(host: string): TlsOptions
  /** true when the host is unverified by tlsFor */
  unverified(host: string): boolean
  /** reached without a proxy: none is configured, or the host is loopback */
  direct(host: string): boolean
}

export function connectionPolicy(opts: TransportOptions = {}): ConnectionPolicy {
  const verified = tlsOptions(opts)
  const unverifiedTls = {...verified, rejectUnauthorized: false}
  const insecure = verified.rejectUnauthorized ? opts.insecureRegistry : undefined
  const proxied = proxySettings(opts) !== undefined
  const unverified = (host: string): boolean => insecure?.(host) === true
  return {
    verified,
    tlsFor: (host) => (unverified(host) ? unverifiedTls : verified),
    unverified,
    // Like Go's net/http (and so docker, crane, skopeo), loopback never goes through a proxy: all of
    // 127.0.0.0/8, which NO_PROXY patterns cannot express.
    direct: (host) => !proxied || isLoopbackRegistry(host),
  }
}

/** One dispatcher for a client: pools per origin, keep-alive, no pipelining, bounded connections. */
export function createDispatcher(opts: TransportOptions = {}, policy = connectionPolicy(opts)): DispatcherType {
  const secure = dispatcherWith(opts, policy, policy.verified)
  if (!opts.insecureRegistry || opts.insecureSkipTlsVerify) return secure
  // one registry unverified, explicitly: its own connections, every other registry still verified
  const unverified = dispatcherWith(opts, policy, {...policy.verified, rejectUnauthorized: false})
  return routed((origin) => (policy.unverified(origin.host) ? unverified : secure), [secure, unverified])
}

function dispatcherWith(opts: TransportOptions, policy: ConnectionPolicy, tls: TlsOptions): DispatcherType {
  const timeout = opts.timeoutMs ?? DEFAULT_REGISTRY_TIMEOUT_MS
  const agentOpts = {
    connections: opts.connections ?? 16,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 120_000,
    headersTimeout: timeout,
    bodyTimeout: timeout,
    connect: {...tls, timeout: Math.min(15_000, timeout)},
  }
  const {Agent, EnvHttpProxyAgent} = undici()
  const proxy = proxySettings(opts)
  if (!proxy) return new Agent(agentOpts)
  const noProxy = [proxy.noProxy, 'localhost', '127.0.0.1', '[::1]'].filter(Boolean).join(',')
  const proxied = new EnvHttpProxyAgent({
    ...agentOpts,
    httpProxy: proxy.httpProxy ?? '',
    httpsProxy: proxy.httpsProxy ?? proxy.httpProxy ?? '',
    noProxy,
    requestTls: tls,
    proxyTls: tls,
    // plain-HTTP registries go through the proxy as absolute-URI requests (no CONNECT), which
    // proxies allow on any port; HTTPS still tunnels with CONNECT
    proxyTunnel: false,
  })
  const direct = new Agent(agentOpts)
  return routed((origin) => (policy.direct(origin.host) ? direct : proxied), [direct, proxied])
}

type Pick = (origin: URL) => DispatcherType

/** A dispatcher that sends each request through the one `pick` chooses for its origin. */
function routed(pick: Pick, all: DispatcherType[]): DispatcherType {
  Routed ??= class extends undici().Dispatcher {
    constructor(private readonly pick: Pick, private readonly all: DispatcherType[]) {
      super()
    }

    override dispatch(opts: DispatcherType.DispatchOptions, handler: DispatcherType.DispatchHandler): boolean {
      const origin = typeof opts.origin === 'string' ? new URL(opts.origin) : opts.origin
      return (origin ? this.pick(origin) : this.all[0]!).dispatch(opts, handler)
    }

    override async close(): Promise<void> {
      await Promise.all(this.all.map((d) => d.close()))
    }

    override async destroy(): Promise<void> {
      await Promise.all(this.all.map((d) => d.destroy()))
    }
  }
  return new Routed(pick, all)
}

// a class over undici's Dispatcher, made when undici is first loaded
let Routed: (new (pick: Pick, all: DispatcherType[]) => DispatcherType) | undefined

const tlsTrustCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'CERT_REJECTED',
])
const tlsValidityCodes = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_REVOKED'])
const notTlsCodes = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_HTTP_REQUEST'])

const networkWords: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'DNS lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_HEADERS_TIMEOUT: 'no response in time',
  UND_ERR_BODY_TIMEOUT: 'the transfer stalled',
}

const tlsHint = 'pass --ca-cert FILE with the registry CA, or --insecure-registry HOST to skip verification for this registry only'
const networkHint = 'check the registry address and that it is running; set HTTPS_PROXY/NO_PROXY if it is behind a proxy'

/** A TLS handshake answered in plain HTTP: the server on that port does not speak TLS. */
export function servesPlainHttp(e: unknown): boolean {
  if (e instanceof KpiError) return (e.details as {servesPlainHttp?: boolean} | undefined)?.servesPlainHttp === true
  return errorCodes(e).some((c) => notTlsCodes.has(c)) || /wrong version number/i.test((e as Error)?.message ?? '')
}

/**
 * Turn a socket/TLS error into a KpiError naming the host; KpiErrors pass through. `registryHost`
 * (host[:port]) fills in flags the hint names, when `host` describes more than the registry.
 */
export function mapTransportError(e: unknown, host: string, registryHost?: string): KpiError {
  if (e instanceof KpiError) return e
  const codes = errorCodes(e)
  const msg = (e as Error)?.message ?? String(e)
  const trust = codes.find((c) => tlsTrustCodes.has(c))
  if (trust) {
    return new KpiError('tls', `TLS certificate of ${host} is not trusted (${msg})`, {hint: tlsHint, cause: e})
  }
  if (codes.includes('ERR_TLS_CERT_ALTNAME_INVALID')) {
    return new KpiError('tls', `TLS certificate of ${host} does not name that host (${msg})`, {hint: 'use the host name the certificate was issued for, or --insecure-registry HOST to skip verification for it', cause: e})
  }
  const validity = codes.find((c) => tlsValidityCodes.has(c))
  if (validity) return new KpiError('tls', `TLS certificate of ${host} is not valid now (${msg})`, {hint: 'renew the registry certificate or check the clock', cause: e})
  if (servesPlainHttp(e)) {
    return new KpiError('tls', `registry ${host} serves plain HTTP, not HTTPS`, {
      hint: `give it TLS, or talk plain HTTP to it with --plain-http ${registryHost ?? host}`, cause: e, details: {source: 'other', servesPlainHttp: true},
    })
  }
  const stalled = codes.find((c) => c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_BODY_TIMEOUT')
  if (stalled) {
    return new KpiError('timeout', `registry ${host} stopped answering (${networkWords[stalled]})`, {
      hint: 'check the registry and the network between; --registry-timeout sets how long kpi waits for a silent registry',
      cause: e,
    })
  }
  const net = codes.find((c) => networkWords[c])
  if (net) return new KpiError('network', `cannot reach registry ${host} (${networkWords[net]})`, {hint: networkHint, cause: e})
  if (codes.some((c) => c.startsWith('ERR_TLS') || c.startsWith('ERR_SSL'))) {
    return new KpiError('tls', `TLS handshake with ${host} failed (${msg})`, {hint: tlsHint, cause: e})
  }
  if (codes.includes('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH')) {
    return new KpiError('integrity', `upload to ${host}: the source gave a different number of bytes than the blob size`, {cause: e})
  }
  return new KpiError('network', `request to registry ${host} failed (${msg})`, {hint: networkHint, cause: e})
}
