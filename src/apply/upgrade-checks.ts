/**
 * What upgrade checks beyond install's preflight:
 * - the version policy: the platform version (semver) may only go up, unless --allow-downgrade
 *   (kpack's CRDs and its stored objects are not built to go back);
 * - the CRDs: a rendered CRD that no longer serves a version the API server still has objects
 *   stored in (status.storedVersions) would make those objects unreadable, as Kubernetes
 *   documents for removing a version; it is refused, naming the CRD and the versions.
 */
import semver from 'semver'
import {KpiError} from '../errors.js'
import type {Kube} from '../kube/client.js'
import type {RenderedObject} from '../render/types.js'
import type {Task} from './preflight.js'

export function versionPolicy(from: string, to: string, allowDowngrade: boolean, task: Task): string {
  task('version policy', 'start')
  const parse = (v: string) => semver.parse(v.replace(/^v/, '')) ?? semver.coerce(v)
  const a = parse(from)
  const b = parse(to)
  if (!a || !b) throw new KpiError('input', `the platform version "${!b ? to : from}" is not a semantic version`, {hint: 'bundle metadata.version must be like 1.4.0'})
  const cmp = semver.compare(a, b)
  const what = cmp < 0 ? `upgrade ${from} -> ${to}` : cmp === 0 ? `same version ${to} (values or images change)` : `downgrade ${from} -> ${to}`
  if (cmp > 0 && !allowDowngrade) {
    task('version policy', 'failed', what)
    throw new KpiError('usage', `preflight: ${to} is older than the installed ${from}: kpi upgrade does not go back by default`, {
      hint: `to return to an earlier revision use kpi rollback (kpi history lists them); to install an older release anyway pass --allow-downgrade`,
    })
  }
  task('version policy', 'done', what)
  return what
}

interface CrdSpec {
  group: string
  names: {plural: string}
  versions: Array<{name: string; served?: boolean}>
}

export async function crdStoredVersions(kube: Kube, objects: RenderedObject[], task: Task): Promise<void> {
  task('CRD versions', 'start')
  const problems: string[] = []
  for (const {object} of objects) {
    if (object.kind !== 'CustomResourceDefinition') continue
    const spec = object.spec as CrdSpec
    const live = await kube.get({apiVersion: object.apiVersion, kind: object.kind, name: object.metadata.name})
    const stored = ((live?.status as {storedVersions?: string[]} | undefined)?.storedVersions) ?? []
    const kept = new Set(spec.versions.map((v) => v.name))
    const dropped = stored.filter((v) => !kept.has(v))
    if (dropped.length) problems.push(`${object.metadata.name} drops ${dropped.join(', ')} (stored versions: ${stored.join(', ')})`)
  }
  if (problems.length) {
    task('CRD versions', 'failed', problems.join('; '))
    throw new KpiError('conflict', `preflight: the new CRDs drop versions objects are still stored in: ${problems.join('; ')}`, {
      hint: 'upgrade through a release that still serves those versions and migrate the stored objects first (kube-storage-version-migrator), then remove the version from status.storedVersions',
    })
  }
  task('CRD versions', 'done', 'no stored version dropped')
}
