/**
 * Image references: `[registry/]repository[:tag][@digest]`, with docker's normalisation
 * (`nginx` is `docker.io/library/nginx`) and the distribution grammar for names, tags and digests.
 */
import {KpiError} from '../errors.js'
import type {ImageRef, Repo} from './types.js'

export const DOCKER_HUB = 'docker.io'

// distribution/reference grammar: path components of lowercase alphanumerics joined by
// `.`, `_`, `__` or runs of `-`.
const component = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*'
const repositoryRe = new RegExp(`^${component}(?:/${component})*$`)
const tagRe = /^[\w][\w.-]{0,127}$/
// host (DNS labels or IPv4), or a bracketed IPv6 address, with an optional port
const domainRe = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/
const digestRes: Record<string, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
}

const pinHint = 'write it as registry/repository[:tag][@sha256:<64 hex>]'

/** Throws a KpiError('input') unless `d` is `sha256:<64 lowercase hex>` (or sha512). */
export function checkDigest(d: string, what = 'digest'): void {
  const i = d.indexOf(':')
  const alg = i > 0 ? d.slice(0, i) : ''
  const re = digestRes[alg]
  if (!re) throw new KpiError('input', `${what} "${d}" is not a supported digest (expected sha256:<64 hex>)`)
  if (!re.test(d.slice(i + 1))) throw new KpiError('input', `${what} "${d}" is malformed (expected ${alg}:<${alg === 'sha256' ? 64 : 128} lowercase hex>)`)
}

export const isDigest = (s: string): boolean => {
  const i = s.indexOf(':')
  const re = i > 0 ? digestRes[s.slice(0, i)] : undefined
  return !!re && re.test(s.slice(i + 1))
}

/** Docker's rule: the first component is a registry when it looks like a host. */
function splitDomain(name: string): {registry: string; path: string} {
  const i = name.indexOf('/')
  const first = i === -1 ? '' : name.slice(0, i)
  if (i === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    return {registry: DOCKER_HUB, path: name}
  }
  return {registry: first, path: name.slice(i + 1)}
}

export function normaliseRegistry(registry: string): string {
  const r = registry.toLowerCase()
  return r === 'index.docker.io' || r === 'registry-1.docker.io' ? DOCKER_HUB : registry
}

/** Parse an image reference; throws KpiError('input') naming the reference when it is invalid. */
export function parseReference(s: string): ImageRef {
  const ref = s.trim()
  if (!ref) throw new KpiError('input', 'empty image reference', {hint: pinHint})
  const bad = (why: string): never => {
    throw new KpiError('input', `invalid image reference "${ref}": ${why}`, {hint: pinHint, details: {source: 'reference', reason: why}})
  }
  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!isDigest(digest)) bad(`"${digest}" is not a valid digest (expected sha256:<64 lowercase hex>)`)
  }
  let tag: string | undefined
  // a tag follows the last ':' that comes after the last '/' (a ':' before it is a port)
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!tagRe.test(tag)) bad(`"${tag}" is not a valid tag`)
  }
  const {registry, path} = splitDomain(rest)
  if (!domainRe.test(registry)) bad(`"${registry}" is not a valid registry host`)
  if (/[A-Z]/.test(path)) bad('repository names must be lowercase')
  if (!repositoryRe.test(path)) bad(`"${path}" is not a valid repository name`)
  const reg = normaliseRegistry(registry)
  const repository = reg === DOCKER_HUB && !path.includes('/') ? `library/${path}` : path
  if (reg.length + 1 + repository.length > 255) bad('the name is longer than 255 characters')
  const out: ImageRef = {registry: reg, repository}
  if (tag !== undefined) out.tag = tag
  if (digest !== undefined) out.digest = digest
  return out
}

/** `registry/repository[:tag][@digest]`, fully qualified. */
export function formatReference(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`
}

export function repoOf(ref: ImageRef): Repo {
  return {registry: ref.registry, repository: ref.repository}
}

/** `registry/repository` */
export const formatRepo = (repo: Repo): string => `${repo.registry}/${repo.repository}`

/** `registry/repository@digest` or `registry/repository:tag`, for messages. */
export const formatImage = (repo: Repo, reference: string): string =>
  `${formatRepo(repo)}${reference.includes(':') ? '@' : ':'}${reference}`
