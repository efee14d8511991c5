/**
 * Raw JSON requests to the API server. The kubeconfig (TLS material, tokens, exec plugins, proxy)
 * is applied by @kubernetes/client-node; the bodies are sent and read as plain JSON because the
 * generated typed models drop every field they do not know when they serialise, which would
 * silently strip fields of objects kpi applies.
 */
import {Agent, request} from 'node:https'
import {request as httpRequest, Agent as HttpAgent, type IncomingHttpHeaders} from 'node:http'
import type {KubeConfig} from '@kubernetes/client-node'
import {KpiError} from '../errors.js'

export interface KubeResponse<T = unknown> {
  status: number
  body: T
  headers: IncomingHttpHeaders
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>
  body?: unknown
  contentType?: string
  /** milliseconds; the whole request (default 30 s) */
  timeoutMs?: number
}

export type Requester = <T = unknown>(method: string, path: string, opts?: RequestOptions) => Promise<KubeResponse<T>>

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'ERR_SSL_WRONG_VERSION_NUMBER',
])

/** Maps a socket error of a request to the cluster to a KpiError naming the server. */
export function transportError(e: unknown, server: string): KpiError {
  const code = (e as NodeJS.ErrnoException).code
  const kubeHint = 'check --kubeconfig and --context (or $KUBECONFIG) and that the cluster is running'
  if (code && TLS_CODES.has(code)) {
    return new KpiError('tls', `cannot verify the TLS certificate of the Kubernetes API at ${server} (${code})`, {
      hint: 'the kubeconfig must carry the cluster CA (certificate-authority-data)', cause: e,
    })
  }
  const why = code ?? (e as Error).message
  return new KpiError('network', `cannot reach the Kubernetes API at ${server} (${why})`, {hint: kubeHint, cause: e})
}

export async function createRequester(kc: KubeConfig): Promise<{request: Requester; close(): void}> {
  const cluster = kc.getCurrentCluster()!
  const server = cluster.server.replace(/\/+$/, '')
  const base = new URL(server)
  // TLS material is fixed for the session: one keep-alive agent, so hundreds of small requests reuse connections
  const first: Record<string, unknown> & {headers?: Record<string, unknown>} = {}
  await kc.applyToHTTPSOptions(first)
  const useOwnAgent = !cluster.proxyUrl
  const tls = {ca: first.ca, cert: first.cert, key: first.key, rejectUnauthorized: first.rejectUnauthorized as boolean | undefined, servername: first.servername as string | undefined}
  const agent = base.protocol === 'https:' ? new Agent({...tls, keepAlive: true, maxSockets: 16} as ConstructorParameters<typeof Agent>[0]) : new HttpAgent({keepAlive: true, maxSockets: 16})

  const doRequest: Requester = async <T>(method: string, path: string, opts: RequestOptions = {}) => {
    // headers per request: tokens from exec plugins and auth providers expire
    const o: Record<string, unknown> & {headers?: Record<string, unknown>; auth?: string; agent?: unknown} = {}
    try {
      await kc.applyToHTTPSOptions(o)
    } catch (e) {
      throw new KpiError('auth', `cannot get credentials for the Kubernetes API at ${server}: ${(e as Error).message.split('\n')[0]}`, {
        hint: 'check the user of the kubeconfig context (exec plugin, token)', cause: e,
      })
    }
    const url = new URL(base.pathname.replace(/\/$/, '') + path, base)
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    const body = opts.body === undefined ? undefined : Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body))
    const headers: Record<string, string> = {accept: 'application/json', 'user-agent': 'kpi'}
    for (const [k, v] of Object.entries(o.headers ?? {})) if (typeof v === 'string') headers[k] = v
    if (o.auth) headers.authorization = `Basic ${Buffer.from(o.auth).toString('base64')}`
    if (body) {
      headers['content-type'] = opts.contentType ?? 'application/json'
      headers['content-length'] = String(body.length)
    }
    const send = url.protocol === 'https:' ? request : httpRequest
    return new Promise<KubeResponse<T>>((resolve, reject) => {
      const reqOpts = {method, headers, agent: (useOwnAgent ? agent : o.agent) as Agent, ...(useOwnAgent ? {} : tls)} as Parameters<typeof request>[1]
      const req = send(url, reqOpts, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', (e) => reject(transportError(e, server)))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown = text
          if (text && /json/.test(res.headers['content-type'] ?? '')) {
            try {
              parsed = JSON.parse(text)
            } catch {
              // keep the text: the caller reports it
            }
          }
          resolve({status: res.statusCode ?? 0, body: parsed as T, headers: res.headers})
        })
      })
      req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(Object.assign(new Error('timed out'), {code: 'ETIMEDOUT'})))
      req.on('error', (e) => reject(transportError(e, server)))
      req.end(body)
    })
  }
  return {request: doRequest, close: () => agent.destroy()}
}
