/** The checked values as the renderer reads them: defaults filled, alternatives resolved. */
import {listOf, str, type RawValues} from './checks.js'
import {KPACK_FEATURE_DEFAULTS} from './defaults.js'
import type {KpackFeatureFlags, ProxyValues, RbacSubject, RegistryValues, TeamRegistryValues, TeamValues, Values, WebhookValues, WorkloadValues} from './types.js'

function workloadOf(raw: Record<string, unknown> | undefined): WorkloadValues {
  const w = raw ?? {}
  return {
    replicas: typeof w.replicas === 'number' ? w.replicas : 1,
    ...(w.resources ? {resources: w.resources as WorkloadValues['resources']} : {}),
    ...(w.nodeSelector ? {nodeSelector: w.nodeSelector as Record<string, string>} : {}),
    ...(w.tolerations ? {tolerations: w.tolerations as WorkloadValues['tolerations']} : {}),
  }
}

function webhookOf(raw: Record<string, unknown> | undefined, dflt: 'Fail' | 'Ignore' = 'Fail'): WebhookValues {
  const p = raw?.failurePolicy
  return {...workloadOf(raw), failurePolicy: p === 'Ignore' || p === 'Fail' ? p : dflt}
}

function featuresOf(raw: Record<string, unknown>): KpackFeatureFlags {
  const flags = {...KPACK_FEATURE_DEFAULTS}
  for (const k of Object.keys(flags) as Array<keyof KpackFeatureFlags>) if (typeof raw[k] === 'boolean') flags[k] = raw[k] as boolean
  return flags
}

export function normalise(raw: RawValues, registry: RegistryValues, teamRegistries: ReadonlyMap<number, TeamRegistryValues> = new Map()): Values {
  const proxy: ProxyValues | undefined = raw.proxy
    ? {
        ...(str(raw.proxy.httpProxy) ? {httpProxy: str(raw.proxy.httpProxy)} : {}),
        ...(str(raw.proxy.httpsProxy) ? {httpsProxy: str(raw.proxy.httpsProxy)} : {}),
        noProxy: listOf(raw.proxy.noProxy),
      }
    : undefined
  const teams: TeamValues[] = (Array.isArray(raw.teams) ? raw.teams : []).map((t: Record<string, unknown>, i) => {
    const namespace = str(t.namespace) ?? String(t.name)
    // only when given: the recorded values (and their digest) of a team without stay as they were
    const own = teamRegistries.get(i)
    return {
      name: String(t.name),
      namespace,
      serviceAccount: str(t.serviceAccount) ?? 'kpi-builds',
      subjects: ((t.subjects as RbacSubject[] | undefined) ?? []).map((s) =>
        s.kind === 'ServiceAccount' ? {kind: s.kind, name: s.name, namespace: s.namespace ?? namespace} : {kind: s.kind, name: s.name},
      ),
      builders: (t.builders as TeamValues['builders'] | undefined) ?? [],
      ...(own ? {registry: own} : {}),
    }
  })
  return {
    registry,
    caCerts: Array.isArray(raw.caCerts) ? (raw.caCerts as string[]) : [],
    ...(proxy ? {proxy} : {}),
    cluster: {
      domain: str(raw.cluster?.domain) ?? 'cluster.local',
      serviceCIDR: listOf(raw.cluster?.serviceCIDR),
      podCIDR: listOf(raw.cluster?.podCIDR),
    },
    teams,
    kpack: {
      controller: {
        ...workloadOf(raw.kpack?.controller),
        // only when given, as features below
        ...(typeof raw.kpack?.controller?.scalingFactor === 'number' ? {scalingFactor: raw.kpack.controller.scalingFactor} : {}),
      },
      webhook: webhookOf(raw.kpack?.webhook),
      // only when given: the values a revision records (and their digest) stay as an earlier kpi
      // recorded them, so the same files upgrade to "up to date", not to a new revision
      ...(raw.kpack?.features ? {features: featuresOf(raw.kpack.features)} : {}),
    },
    // Ignore, as cert-injection-webhook ships: it sees build pods only, but a Fail would stop every build while it is down
    certInjection: webhookOf(raw.certInjection, 'Ignore'),
  }
}
