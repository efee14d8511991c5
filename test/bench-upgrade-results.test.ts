import {describe, expect, it} from 'vitest'
import {clusterChecks, clusterTable, clusterWorkloads, type UpgradeBenchResult} from '../bench/lib/upgrade-results.js'

const MIB = 1024 * 1024

// what bench/upgrade.ts prints with --json, three rounds of four tools
const result: UpgradeBenchResult = {
  ok: true,
  machine: {date: '2026-12-05T04:00:00.000Z'},
  rounds: 3,
  settleS: 2,
  tools: ['kpi', 'helm', 'kubectl', 'kapp'],
  runs_s: {
    kpi: {install: [0.9, 1.1, 1.0], upgrade: [0.8, 0.7, 0.9], rollback: [0.9, 0.95, 1.0], recover: [1, 1, 1]},
    helm: {install: [1.2, 1.3, 1.25], upgrade: [1.5, 1.6, 1.4], rollback: [0.85, 0.9, 0.8], recover: [2, 2.2, 2.1]},
    kubectl: {install: [2.2, 2.3, 2.25], upgrade: [1.2, 1.3, 1.1], rollback: [2.1, 2.1, 2.1], recover: [4, 4, 4]},
    kapp: {install: [6, 7, 5], upgrade: [3, 3, 3], rollback: [4, 4.5, 5], recover: [8, 8, 8]},
  },
  peak_rss_bytes: {kpi: {install: 90 * MIB, upgrade: 95 * MIB, rollback: 80 * MIB, recover: 96 * MIB}, helm: {install: 60 * MIB}},
}

describe('bench: install, upgrade and rollback as workloads of the report', () => {
  it('gives each verb its medians, spreads, fastest peer and ratio, and the peak RSS measured', () => {
    const ws = clusterWorkloads(result)
    expect(ws.map((w) => w.name)).toEqual(['install', 'upgrade', 'rollback', 'failed-upgrade-recovery'])
    const install = ws[0]!
    expect(install.kpi_s).toBe(1)
    expect(install.helm_s).toBe(1.25)
    expect(install.kapp_s).toBe(6)
    expect(install.best_peer).toBe('helm')
    expect(install.ratio_vs_best_peer).toBe(1.25)
    expect(install.spread.kapp).toBeCloseTo(2 / 6, 3)
    expect(install.peak_rss_bytes).toMatchObject({kpi: 90 * MIB, helm: 60 * MIB})
    expect(install.peak_rss_bytes.kapp).toBeUndefined()
    expect(install.measured_at).toBe(result.machine!.date)
    expect(ws[3]!.runs.helm).toEqual([2, 2.2, 2.1])
    // the fastest peer is chosen per verb: kubectl's upgrade beats Helm's
    expect(ws[1]!.best_peer).toBe('kubectl')
    expect(ws[1]!.ratio_vs_best_peer).toBe(1.5)
  })

  it('judges kpi against the fastest peer: a rollback slower than Helm\'s is a miss', () => {
    const checks = clusterChecks(clusterWorkloads(result))
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['install: kpi faster than every peer', true],
      ['upgrade: kpi faster than every peer', true],
      ['rollback: kpi faster than every peer', false],
      ['failed-upgrade-recovery: kpi faster than every peer', true],
    ])
    expect(checks[2]!.detail).toContain('best peer (helm) 0.85 s, kpi 0.95 s')
  })

  it('gives nothing for a failed or missing upgrade benchmark, and judges no tool without a peer', () => {
    expect(clusterWorkloads(undefined)).toEqual([])
    expect(clusterWorkloads({ok: false, reason: 'helm 4 not built'})).toEqual([])
    const alone = clusterWorkloads({...result, runs_s: {kpi: result.runs_s!.kpi!}})
    expect(alone).toHaveLength(4)
    expect(alone[0]!.best_peer).toBeUndefined()
    expect(clusterChecks(alone)).toEqual([])
  })

  it('renders a table with the pause, the ratio and the RSS columns only where memory was measured', () => {
    const table = clusterTable(clusterWorkloads(result), result).join('\n')
    expect(table).toContain('a 2 s pause before each timed operation')
    expect(table).toContain('| workload | kpi | Helm 4 | kubectl | kapp | best peer / kpi | peak RSS kpi | peak RSS Helm 4 | peak RSS kubectl | peak RSS kapp |')
    expect(table).toContain('| rollback | 0.95 ±5% | 0.85 ±6% | 2.10 ±0% | 4.50 ±11% | 0.90x (Helm 4) | 80.0 MiB | - | - | - |')
    const older = {...result, settleS: undefined, peak_rss_bytes: undefined}
    const plain = clusterTable(clusterWorkloads(older), older).join('\n')
    expect(plain).toContain('each operation timed right after the one before')
    expect(plain).not.toContain('peak RSS')
    expect(clusterTable([], result)).toEqual([])
  })
})
