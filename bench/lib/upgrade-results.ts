/**
 * bench/upgrade.ts's result as workloads of the benchmark report: install, upgrade, rollback and
 * recovery from a failed health gate, each with kpi's seconds, each peer's (Helm 4, kapp, kubectl), the
 * ratio to the fastest peer and every tool's peak RSS, so latest.json holds every workload the
 * issue names in one list, and its checks judge them like the relocation workloads.
 */
import {fmtBytes, markdownHead} from './format.js'
import {fastest, median, round3, spread} from './stats.js'

type Verb = 'install' | 'upgrade' | 'rollback' | 'recover'

/** What bench/upgrade.ts prints with --json (the fields read here). */
export interface UpgradeBenchResult {
  ok: boolean
  reason?: string
  machine?: {date: string}
  rounds?: number
  settleS?: number
  tools?: string[]
  runs_s?: Record<string, Partial<Record<Verb, number[]>>>
  peak_rss_bytes?: Record<string, Partial<Record<Verb, number | undefined>>>
}

export interface ClusterWorkload {
  name: string
  description: string
  measured_at?: string
  [key: `${string}_s`]: number | undefined
  best_peer?: string
  ratio_vs_best_peer?: number
  spread: Record<string, number | undefined>
  peak_rss_bytes: Record<string, number | undefined>
  /** each round's seconds */
  runs: Record<string, number[]>
}

const WORKLOADS: Array<{verb: Verb; name: string; description: string}> = [
  {verb: 'install', name: 'install', description: 'v1 onto an empty cluster, until every rollout is done (the sandbox\'s control plane, KWOK nodes)'},
  {verb: 'upgrade', name: 'upgrade', description: 'v1 to v2 (the patch release), until every rollout is done'},
  {verb: 'rollback', name: 'rollback', description: 'v2 back to v1, until every rollout is done (kapp and kubectl have no rollback: v1 applied again)'},
  {verb: 'recover', name: 'failed-upgrade-recovery', description: 'an upgrade whose controller cannot be scheduled, back to a healthy v1 (the health gate\'s timeout not counted)'},
]

/** The names of the four, as `npm run bench -- --workloads` takes them. */
export const CLUSTER_WORKLOAD_NAMES = WORKLOADS.map((w) => w.name)

/** The four workloads of an upgrade benchmark result; none from a failed or missing one. */
export function clusterWorkloads(result: UpgradeBenchResult | undefined): ClusterWorkload[] {
  if (!result?.ok || !result.runs_s) return []
  const tools = Object.keys(result.runs_s)
  return WORKLOADS.map(({verb, name, description}) => {
    const w: ClusterWorkload = {name, description, measured_at: result.machine?.date, spread: {}, peak_rss_bytes: {}, runs: {}}
    for (const t of tools) {
      const runs = result.runs_s![t]?.[verb] ?? []
      if (!runs.length) continue
      w.runs[t] = runs.map((s) => round3(s)!)
      w[`${t}_s`] = round3(median(runs))
      w.spread[t] = round3(spread(runs))
      w.peak_rss_bytes[t] = result.peak_rss_bytes?.[t]?.[verb]
    }
    const kpi = w.kpi_s
    const best = fastest(tools.filter((t) => t !== 'kpi' && w[`${t}_s`] !== undefined).map((t) => [t, w[`${t}_s`]!] as const))
    if (kpi && best) {
      const [peer, s] = best
      w.best_peer = peer
      w.ratio_vs_best_peer = round3(s / kpi)
    }
    return w
  })
}

/** The issue's goal for these workloads: kpi faster than every peer (Helm 4, kapp and kubectl). */
export function clusterChecks(workloads: ClusterWorkload[]): Array<{name: string; ok: boolean; detail: string}> {
  return workloads.filter((w) => w.ratio_vs_best_peer !== undefined).map((w) => ({
    name: `${w.name}: kpi faster than every peer`,
    ok: w.ratio_vs_best_peer! > 1,
    detail: `best peer (${w.best_peer}) ${w[`${w.best_peer}_s`]} s, kpi ${w.kpi_s} s: ${w.ratio_vs_best_peer}x`,
  }))
}

/** A markdown table of them: seconds with spread, the ratio, and peak RSS. */
export function clusterTable(workloads: ClusterWorkload[], result: UpgradeBenchResult | undefined): string[] {
  if (!workloads.length) return []
  const tools = [...new Set(workloads.flatMap((w) => Object.keys(w.runs)))]
  const label = (t: string | undefined) => (t === 'helm' ? 'Helm 4' : t)
  // results from before bench/upgrade.ts measured memory have none to show
  const rss = workloads.some((w) => Object.values(w.peak_rss_bytes).some((b) => b !== undefined)) ? tools : []
  const head = ['workload', ...tools.map(label), 'best peer / kpi', ...rss.map((t) => `peak RSS ${label(t)}`)]
  const rows = workloads.map((w) => {
    const secs = tools.map((t) => {
      const s = w[`${t}_s`]
      const sp = w.spread[t]
      return s === undefined ? '-' : `${s.toFixed(2)}${sp !== undefined ? ` ±${Math.round(sp * 50)}%` : ''}`
    })
    const ratio = w.ratio_vs_best_peer !== undefined ? `${w.ratio_vs_best_peer.toFixed(2)}x (${label(w.best_peer)})` : '-'
    return `| ${w.name} | ${[...secs, ratio, ...rss.map((t) => fmtBytes(w.peak_rss_bytes[t]) ?? '-')].join(' | ')} |`
  })
  const when = result?.machine?.date ? `, ${result.machine.date.slice(0, 16).replace('T', ' ')} UTC` : ''
  const pause = result?.settleS ? `a ${result.settleS} s pause before each timed operation, so each starts on a settled cluster` : 'each operation timed right after the one before'
  return [
    `Install, upgrade and rollback to ready (bench/upgrade.ts${when}): ${result?.rounds === 1 ? 'one round' : `medians of ${result?.rounds ?? '?'} rounds`} on the sandbox's control plane with KWOK nodes, ${pause}; `
      + `seconds, ± half the spread ((max-min)/median)${rss.length ? ', then peak RSS (the largest of the rounds)' : ''}.`,
    '',
    ...markdownHead(head),
    ...rows,
  ]
}
