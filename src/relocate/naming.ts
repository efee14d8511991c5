/**
 * Where each image goes: `--to-repo REGISTRY/PREFIX` puts an image from `any.registry/a/b` at
 * `REGISTRY/PREFIX/a/b`. Deterministic and readable, and the same for registry-to-registry and
 * archive-to-registry relocation, so both give the same lock.
 */
import {KpiError} from '../errors.js'
import type {ImageRef, Repo} from '../oci/index.js'

export interface Destination {
  registry: string
  prefix: string
}

const hostLike = /^(localhost|\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9.-]+:[0-9]+|\[[0-9a-fA-F:.]+\]:[0-9]+)(:[0-9]+)?$/
const pathRe = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$/

export function parseDestination(toRepo: string): Destination {
  const s = toRepo.trim().replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '')
  const i = s.indexOf('/')
  const registry = i === -1 ? s : s.slice(0, i)
  const prefix = i === -1 ? '' : s.slice(i + 1)
  if (!hostLike.test(registry)) {
    throw new KpiError('usage', `--to-repo "${toRepo}" does not start with a registry host`, {hint: 'write it as REGISTRY[:PORT]/PREFIX, e.g. registry.corp.example/build-service'})
  }
  if (prefix && !pathRe.test(prefix)) {
    throw new KpiError('usage', `--to-repo "${toRepo}": "${prefix}" is not a valid repository path`, {hint: 'use lowercase letters, digits, and . _ - between slashes'})
  }
  return {registry, prefix}
}

export function destinationRepo(dest: Destination, src: Pick<ImageRef, 'repository'>): Repo {
  return {registry: dest.registry, repository: dest.prefix ? `${dest.prefix}/${src.repository}` : src.repository}
}

export const formatDigestRef = (repo: Repo, digest: string) => `${repo.registry}/${repo.repository}@${digest}`
