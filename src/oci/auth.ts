/**
 * Registry authentication from the `WWW-Authenticate` challenge: Basic, or a Bearer token from
 * the realm (GET with Basic credentials or anonymous; OAuth2 POST with an identity token),
 * scoped `repository:<repo>:pull[,push]`, cached per registry and scope until it expires.
 * Passwords and tokens never go into messages.
 */
import type {Dispatcher} from 'undici'
import {KpiError} from '../errors.js'
import {defaultRetryPolicy, withRetry, type RetryPolicy} from './retry.js'
import {mapTransportError} from './transport.js'
import type {Credentials} from './types.js'

export interface Challenge {
  /** lowercase: `basic`, `bearer` */
  scheme: string
  params: Record<string, string>
}

/** Parse `WWW-Authenticate` (RFC 7235): one or more challenges with auth-params. */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (!header) return []
  const text = Array.isArray(header) ? header.join(', ') : header
  const out: Challenge[] = []
  let i = 0
  const n = text.length
  const skip = (chars: string): void => { while (i < n && chars.includes(text[i]!)) i++ }
  const token = (): string => {
    const start = i
    while (i < n && !' \t,="'.includes(text[i]!)) i++
    return text.slice(start, i)
  }
  let current: Challenge | undefined
  while (i < n) {
    skip(' \t,')
    if (i >= n) break
    const word = token()
    if (!word) { i++; continue }
    const save = i
    skip(' \t')
    if (text[i] === '=' && current) {
      i++
      skip(' \t')
      let value = ''
      if (text[i] === '"') {
        i++
        while (i < n && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < n) i++
          value += text[i]
          i++
        }
        i++
      } else {
        value = token()
      }
      current.params[word.toLowerCase()] = value
    } else {
      i = save
      current = {scheme: word.toLowerCase(), params: {}}
      out.push(current)
    }
  }
  return out
}

export const pullScope = (repository: string): string => `repository:${repository}:pull`
export const pushScope = (repository: string): string => `repository:${repository}:pull,push`

/** `repository:a:pull` + `repository:a:push` -> `repository:a:pull,push`; sorted, so keys are stable. */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>()
  for (const s of scopes) {
    const i = s.lastIndexOf(':')
    if (i === -1) continue
    const resource = s.slice(0, i)
    const actions = byResource.get(resource) ?? new Set<string>()
    for (const a of s.slice(i + 1).split(',')) if (a) actions.add(a)
    byResource.set(resource, actions)
  }
  return [...byResource].map(([r, a]) => `${r}:${[...a].sort().join(',')}`).sort()
}

function covers(granted: string[], wanted: string[]): boolean {
  const have = new Map<string, Set<string>>()
  for (const s of granted) {
    const i = s.lastIndexOf(':')
    have.set(s.slice(0, i), new Set(s.slice(i + 1).split(',')))
  }
  return wanted.every((s) => {
    const i = s.lastIndexOf(':')
    const actions = have.get(s.slice(0, i))
    return !!actions && s.slice(i + 1).split(',').every((a) => actions.has(a) || actions.has('*'))
  })
}

interface CachedToken {
  scopes: string[]
  header: string
  expiresAt: number
}

interface RegistryState {
  challenge?: Challenge
  tokens: CachedToken[]
  inflight: Map<string, Promise<CachedToken>>
}

/** One HTTP exchange, as the client sends it (request.ts): errors as they come, not mapped. */
export type TokenRequest = (url: URL, method: 'GET' | 'POST', headers: Record<string, string>, body?: string) => Promise<Dispatcher.ResponseData>

export interface AuthOptions {
  /** how token requests are sent */
  request: TokenRequest
  credentials: (registry: string) => Promise<Credentials | undefined>
  userAgent: string
  /** client id sent with OAuth2 requests */
  clientId?: string
  /**
   * Whether credentials may go to `host` over plain HTTP (a registry or token server the user
   * named plain HTTP, or loopback). Unset: never.
   */
  plainAllowed?: (host: string) => boolean
  /** retries of token requests on 429, 5xx and reset connections (the client's policy); default: defaultRetryPolicy */
  retryPolicy?: RetryPolicy
}

export const userOf = (c: Credentials | undefined): string =>
  c?.username ? `user "${c.username}"` : c?.identityToken ? 'the identity token' : c?.registryToken ? 'the registry token' : 'anonymous access'

export function refusedError(registry: string, creds: Credentials | undefined): KpiError {
  if (!creds || (!creds.username && !creds.password && !creds.identityToken && !creds.registryToken)) {
    return new KpiError('auth', `registry ${registry} requires authentication`, {
      hint: `run docker login ${registry}, or set KPI_REGISTRY_USERNAME, KPI_REGISTRY_PASSWORD and KPI_REGISTRY_HOSTNAME=${registry}`,
    })
  }
  return new KpiError('auth', `registry ${registry} refused the credentials for ${userOf(creds)}`, {
    hint: `check the password in ${creds.source ?? 'your docker config'} or run docker login ${registry}`,
  })
}

// per credentials object: a Basic registry gets the header on every request (hundreds per relocation)
const basicHeaders = new WeakMap<Credentials, string>()

function basicHeader(c: Credentials): string {
  let h = basicHeaders.get(c)
  if (h === undefined) {
    h = `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`
    basicHeaders.set(c, h)
  }
  return h
}

/** Authentication state of one client: what each registry asked for, and its tokens. */
export class Authenticator {
  private readonly states = new Map<string, RegistryState>()
  private readonly opts: AuthOptions

  constructor(opts: AuthOptions) {
    this.opts = opts
  }

  private state(registry: string): RegistryState {
    let s = this.states.get(registry)
    if (!s) {
      s = {tokens: [], inflight: new Map()}
      this.states.set(registry, s)
    }
    return s
  }

  /** Record the challenge a registry answered with (from GET /v2/ or any 401). */
  learn(registry: string, header: string | string[] | undefined): Challenge | undefined {
    const all = parseChallenges(header)
    const c = all.find((x) => x.scheme === 'bearer') ?? all.find((x) => x.scheme === 'basic')
    if (c) this.state(registry).challenge = c
    return c
  }

  scheme(registry: string): string | undefined {
    return this.states.get(registry)?.challenge?.scheme
  }

  /** The Authorization header for a request with these scopes, fetching a token if needed. */
  async authorization(registry: string, scopes: string[]): Promise<string | undefined> {
    const st = this.states.get(registry)
    const c = st?.challenge
    if (!c) return undefined
    const creds = await this.opts.credentials(registry)
    if (c.scheme === 'basic') return creds?.username || creds?.password ? basicHeader(creds) : undefined
    if (c.scheme !== 'bearer') return undefined
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`
    return (await this.token(registry, mergeScopes(scopes), creds)).header
  }

  /**
   * A request was refused with 401: drop the token it used and widen the scope to what the
   * registry asked for. True when another attempt can succeed.
   */
  async refused(registry: string, scopes: string[], header: string | string[] | undefined, sentAuth: string | undefined): Promise<{retry: boolean; scopes: string[]}> {
    const before = this.scheme(registry)
    const c = this.learn(registry, header)
    if (!c) return {retry: false, scopes}
    if (!sentAuth || before !== c.scheme) {
      // we had not authenticated (or the registry changed its mind about how): try now
      const creds = await this.opts.credentials(registry)
      const canAuth = c.scheme === 'bearer' || !!(creds?.username || creds?.password)
      return {retry: canAuth, scopes: this.widen(scopes, c)}
    }
    if (c.scheme !== 'bearer') return {retry: false, scopes}
    const st = this.state(registry)
    st.tokens = st.tokens.filter((t) => t.header !== sentAuth)
    const widened = this.widen(scopes, c)
    // same scope again would get the same answer, unless the token merely expired server-side
    return {retry: true, scopes: widened}
  }

  private widen(scopes: string[], c: Challenge): string[] {
    return c.params.scope ? mergeScopes([...scopes, ...c.params.scope.split(' ')]) : mergeScopes(scopes)
  }

  /** Check the credentials the way `docker login` does: a token with no scope, or Basic on /v2/. */
  async verifyToken(registry: string): Promise<void> {
    const st = this.states.get(registry)
    if (st?.challenge?.scheme !== 'bearer') return
    const creds = await this.opts.credentials(registry)
    if (creds?.registryToken) return
    await this.token(registry, [], creds, true)
  }

  private async token(registry: string, scopes: string[], creds: Credentials | undefined, fresh = false): Promise<CachedToken> {
    const st = this.state(registry)
    const now = Date.now()
    st.tokens = st.tokens.filter((t) => t.expiresAt > now)
    if (!fresh) {
      const hit = st.tokens.find((t) => covers(t.scopes, scopes))
      if (hit) return hit
    }
    const key = scopes.join(' ')
    let p = st.inflight.get(key)
    if (!p) {
      p = this.fetchToken(registry, st.challenge!, scopes, creds).finally(() => st.inflight.delete(key))
      st.inflight.set(key, p)
    }
    const t = await p
    if (!st.tokens.includes(t)) st.tokens.push(t)
    return t
  }

  private async fetchToken(registry: string, c: Challenge, scopes: string[], creds: Credentials | undefined): Promise<CachedToken> {
    const realm = c.params.realm
    if (!realm) throw new KpiError('failed', `registry ${registry} asked for a bearer token but named no realm`)
    let url: URL
    try {
      url = new URL(realm)
    } catch {
      throw new KpiError('failed', `registry ${registry} named an invalid token realm "${realm}"`)
    }
    const sends = !!(creds?.identityToken || creds?.username || creds?.password)
    if (sends && url.protocol === 'http:' && !this.opts.plainAllowed?.(url.host)) {
      // a challenge (from the registry, or anything in between) must not move credentials into the clear
      throw new KpiError('auth', `registry ${registry} named a plain-HTTP token server, ${url.origin}: kpi does not send credentials to it unencrypted`, {
        hint: `if that token server is on a network you trust and speaks only HTTP, name it plain HTTP (--plain-http ${url.host}, or KPI_PLAIN_HTTP)`,
      })
    }
    const service = c.params.service
    const headers: Record<string, string> = {'user-agent': this.opts.userAgent}
    let method: 'GET' | 'POST' = 'GET'
    let form: string | undefined
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant, as docker does with an identity token
      const params = new URLSearchParams({grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: this.opts.clientId ?? 'kpi'})
      if (service) params.set('service', service)
      if (scopes.length) params.set('scope', scopes.join(' '))
      method = 'POST'
      form = params.toString()
      headers['content-type'] = 'application/x-www-form-urlencoded'
    } else {
      if (service) url.searchParams.set('service', service)
      for (const s of scopes) url.searchParams.append('scope', s)
      if (creds?.username) url.searchParams.set('account', creds.username)
      if (creds?.username || creds?.password) headers.authorization = basicHeader(creds)
    }
    let res: Dispatcher.ResponseData
    try {
      // a token server that is briefly unavailable or limits the rate (a public one under load)
      // must not end a relocation any more than the registry itself: the request (a GET, or a
      // POST that only exchanges a refresh token, with a body sent again as is) is retried alike
      res = await withRetry(() => this.opts.request(url, method, headers, form), this.opts.retryPolicy ?? defaultRetryPolicy, async (r) => {
        await r.body.dump().catch(() => {})
      })
    } catch (e) {
      throw mapTransportError(e, `${url.host} (token server of ${registry})`)
    }
    const text = await res.body.text()
    if (res.statusCode === 401 || res.statusCode === 403) throw refusedError(registry, creds)
    if (res.statusCode !== 200) {
      throw new KpiError('failed', `token server of registry ${registry} answered ${res.statusCode}`, {hint: 'check the registry, or retry later'})
    }
    let body: {token?: string; access_token?: string; expires_in?: number}
    try {
      body = JSON.parse(text) as typeof body
    } catch {
      throw new KpiError('failed', `token server of registry ${registry} did not answer JSON`)
    }
    const token = body.token || body.access_token
    if (!token) throw new KpiError('failed', `token server of registry ${registry} returned no token`)
    // docker's default lifetime is 60 s; renew a little early so a token never dies in flight
    const life = (body.expires_in && body.expires_in > 0 ? body.expires_in : 60) * 1000
    return {scopes, header: `Bearer ${token}`, expiresAt: Date.now() + life - Math.min(10_000, life / 10)}
  }
}
