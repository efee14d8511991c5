/**
 * renderPlatform: a relocated lock plus site values in, the platform's Kubernetes objects out,
 * staged for the installer. Pure: no I/O, same inputs give the same objects in the same order.
 */
import semver from 'semver'
import type {Builder, Bundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import {addConfigChecksums} from './config-checksum.js'
import {kpackCrds, type KpackFeatures} from './crds.js'
import {assertAirGapped, assertCredentialsOnlyInSecrets, stringsOf} from './guard.js'
import {kpackConfig, kpackNamespace, kpackRbac, kpackWorkloads} from './kpack.js'
import {builderTag, clusterBuilders, clusterStacks, clusterStores, hasCredentials, lifecycle, REGISTRY_SECRET, registryConfig, registryPrefix} from './platform.js'
import {hasOwnAccount, teamBuilderTag, teamObjects, teamRoles} from './teams.js'
import {certInjection} from './cert-injection.js'
import {bypassesProxy, controllerTrust, noProxyList, trustConfig} from './trust.js'
import type {Values} from '../values/types.js'
import {STAGES, type RenderedObject, type RenderOptions, type RenderResult} from './types.js'

export const MIN_KPACK = '0.10.0'
export const CLUSTER_LIFECYCLE_SINCE = '0.17.0'
export const GIT_SHALLOW_CLONE_SINCE = '0.17.0'

/** What the pinned kpack version has; throws KpiError('input') for a version kpi cannot render. */
export function kpackFeatures(version: string): KpackFeatures {
  const v = semver.coerce(version)
  if (!v || !semver.valid(version.replace(/^v/, ''))) {
    throw new KpiError('input', `kpack.version "${version}" is not a semantic version`, {hint: 'write the kpack release the bundle pins, e.g. 0.13.2'})
  }
  if (semver.lt(v, MIN_KPACK)) {
    throw new KpiError('input', `kpack ${version} is older than kpi supports (>= ${MIN_KPACK})`, {hint: 'pin a newer kpack release in the bundle'})
  }
  // a pre-release of 0.17 (0.17.0-rc.1) already has ClusterLifecycle: compare the release numbers
  return {clusterLifecycle: semver.gte(v, CLUSTER_LIFECYCLE_SINCE), readsShallowCloneFlag: semver.gte(v, GIT_SHALLOW_CLONE_SINCE)}
}

/**
 * Two builders pushed to one tag would overwrite each other's image, one kpack reconcile after
 * another: a team's repository (whose Builders' tags carry no namespace) must keep them apart from
 * the platform's and from other teams'.
 */
function checkBuilderTags(lock: Bundle, values: Values): void {
  const owner = new Map<string, string>()
  const clashes: string[] = []
  const claim = (tag: string, who: string) => {
    const other = owner.get(tag)
    if (other) clashes.push(`${other} and ${who} would both be pushed to ${tag}`)
    else owner.set(tag, who)
  }
  for (const b of lock.builders) if (!b.namespace) claim(builderTag(values.registry, b.name), `ClusterBuilder ${b.name}`)
  values.teams.forEach((t, i) => {
    const names = new Set([...t.builders.map((b) => b.name), ...lock.builders.filter((b) => b.namespace === t.namespace).map((b) => b.name)])
    const field = t.registry?.repository ? ` (teams[${i}].registry.repository ${t.registry.repository})` : ''
    for (const n of names) claim(teamBuilderTag(t, values.registry, n), `Builder ${t.namespace}/${n}${field}`)
  })
  if (!clashes.length) return
  throw new KpiError('input', clashes.length === 1 ? clashes[0]! : [`${clashes.length} builder tags clash:`, ...clashes.map((c) => `  ${c}`)].join('\n'), {
    hint: "give each team a repository of its own in teams[].registry.repository, apart from registry.repository and from other teams'",
  })
}

/** Checks that every builder names a stack and store of the lock and a namespace that exists. */
function checkReferences(lock: Bundle, values: Values): void {
  const problems: string[] = []
  const stacks = new Set(lock.stacks.map((s) => s.name))
  const stores = new Set(lock.stores.map((s) => s.name))
  const teamNamespaces = new Set(values.teams.map((t) => t.namespace))
  const check = (b: {name: string; stack: string; store: string}, where: string) => {
    if (!stacks.has(b.stack)) problems.push(`${where}: stack "${b.stack}" is not a stack of the lock (${[...stacks].join(', ') || 'none'})`)
    if (!stores.has(b.store)) problems.push(`${where}: store "${b.store}" is not a store of the lock (${[...stores].join(', ') || 'none'})`)
  }
  lock.builders.forEach((b, i) => {
    check(b, `lock builders[${i}] (${b.name})`)
    if (b.namespace && !teamNamespaces.has(b.namespace)) {
      problems.push(`lock builders[${i}] (${b.name}): namespace "${b.namespace}" is not the namespace of a team in the values (add a team with namespace: ${b.namespace})`)
    }
  })
  values.teams.forEach((t, i) => {
    t.builders.forEach((b, j) => {
      check(b, `values teams[${i}].builders[${j}] (${b.name})`)
      if (lock.builders.some((lb) => lb.namespace === t.namespace && lb.name === b.name)) {
        problems.push(`values teams[${i}].builders[${j}]: a lock builder named "${b.name}" is already in namespace ${t.namespace}`)
      }
    })
  })
  if (problems.length === 1) throw new KpiError('input', problems[0]!, {hint: 'builders must name stacks and stores of the lock'})
  if (problems.length) throw new KpiError('input', [`${problems.length} problems with builder references:`, ...problems.map((p) => `  ${p}`)].join('\n'))
}

/** A flag the pinned kpack would silently ignore is refused: the user believes it is on. */
function checkFeatureFlags(lock: Bundle, values: Values, f: KpackFeatures): void {
  if (values.kpack.features?.gitShallowClone && !f.readsShallowCloneFlag) {
    throw new KpiError('input', `values kpack.features.gitShallowClone: kpack ${lock.kpack.version}, which the lock pins, does not read GIT_RESOLVER_USE_SHALLOW_CLONE; kpack ${GIT_SHALLOW_CLONE_SINCE} and later do`, {
      hint: `remove the field, or upgrade to a bundle with kpack ${GIT_SHALLOW_CLONE_SINCE} or later`,
    })
  }
}

export function renderPlatform(lock: Bundle, values: Values, opts: RenderOptions = {}): RenderResult {
  const {objects, warnings} = renderObjects(lock, values)
  if (!opts.skipAirGapGuard) assertAirGapped(objects, values.registry)
  // the same render with other passwords: a string it has too holds a short password by coincidence
  const guardAccount = {username: 'kpi', password: '\u0000kpi-guard\u0000'}
  const other: Values = {
    ...values,
    registry: {server: values.registry.server, repository: values.registry.repository, ...guardAccount},
    teams: values.teams.map((t) => (t.registry ? {...t, registry: {repository: t.registry.repository, ...guardAccount}} : t)),
  }
  const accounts = [values.registry, ...values.teams.flatMap((t) => (t.registry ? [t.registry] : []))]
  assertCredentialsOnlyInSecrets(objects, accounts, () => stringsOf(renderObjects(lock, other).objects))
  return {objects, warnings}
}

/** The objects and warnings, before the guards. */
function renderObjects(lock: Bundle, values: Values): RenderResult {
  const f = kpackFeatures(lock.kpack.version)
  checkReferences(lock, values)
  checkBuilderTags(lock, values)
  checkFeatureFlags(lock, values, f)
  const warnings: string[] = []
  const inj = certInjection(values, lock.certInjection, values.certInjection)
  warnings.push(...inj.warnings)
  // said, not decided: some clusters do reach their registry through the proxy
  // HTTPS_PROXY only: Go sends an https request to no other
  if (values.proxy?.httpsProxy && !bypassesProxy(values.registry.server, noProxyList(values))) {
    warnings.push(`the registry ${values.registry.server} is not in proxy.noProxy: the kpack controller and build pods reach it through the proxy; add it (or a domain above it) to proxy.noProxy unless the proxy is how the cluster reaches it`)
  }

  const teamBuilders = (ns: string): Builder[] => lock.builders.filter((b) => b.namespace === ns)
  const teams = [...values.teams].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  // said, not refused: one account for everything is how many start, but it should be a choice
  const shared = hasCredentials(values.registry) ? teams.filter((t) => !hasOwnAccount(t)) : []
  if (shared.length) {
    warnings.push(`team${shared.length === 1 ? '' : 's'} ${shared.map((t) => t.name).join(', ')} get${shared.length === 1 ? 's' : ''} the platform's registry account, which can push the platform's own images (stacks, lifecycle, builders): every build in the team's namespace, and everyone who may read its Secrets, has it; give each team an account of its own in teams[].registry (pull on ${registryPrefix(values.registry)}, push on a repository of the team's)`)
  }

  const objects: RenderedObject[] = [
    kpackNamespace(),
    ...kpackCrds(f),
    ...kpackRbac(f),
    ...kpackConfig(lock),
    ...trustConfig(values),
    ...registryConfig(values.registry),
    ...kpackWorkloads(lock, values.kpack, controllerTrust(values), hasCredentials(values.registry) ? REGISTRY_SECRET : undefined),
    ...inj.objects,
    lifecycle(lock, f.clusterLifecycle, values.registry),
    ...clusterStacks(lock, values.registry),
    ...clusterStores(lock, values.registry),
    ...clusterBuilders(lock, values.registry),
    ...(teams.length ? teamRoles(f.clusterLifecycle) : []),
    ...teams.flatMap((t) => teamObjects(t, values, teamBuilders(t.namespace))),
  ]
  // stable: objects keep their order within a stage
  const rank = (o: RenderedObject) => STAGES.indexOf(o.stage)
  objects.sort((a, b) => rank(a) - rank(b))

  addConfigChecksums(objects)
  return {objects, warnings}
}
