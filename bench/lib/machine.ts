/**
 * Facts about the machine a benchmark ran on, printed with every result: numbers from a shared
 * 2-core box under load mean something else than from an idle workstation.
 */
import {cpus, freemem, loadavg, release, totalmem} from 'node:os'

export interface MachineFacts {
  date: string
  cores: number
  cpuModel: string
  memTotalBytes: number
  memFreeBytes: number
  node: string
  os: string
  /** 1, 5 and 15-minute load averages when the facts were taken */
  loadavg: [number, number, number]
}

export function machineFacts(): MachineFacts {
  const c = cpus()
  const [l1, l5, l15] = loadavg()
  return {
    date: new Date().toISOString(),
    cores: c.length,
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    memTotalBytes: totalmem(),
    memFreeBytes: freemem(),
    node: process.version,
    os: `${process.platform} ${release()} ${process.arch}`,
    loadavg: [l1!, l5!, l15!],
  }
}

export const fmtLoad = (l: readonly number[]): string => l.map((x) => x.toFixed(2)).join(' ')

export function formatMachineFacts(m: MachineFacts): string {
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`
  return [
    `date:    ${m.date}`,
    `machine: ${m.cores} cores (${m.cpuModel}), ${gib(m.memTotalBytes)} RAM (${gib(m.memFreeBytes)} free), ${m.os}`,
    `node:    ${m.node}`,
    `load:    ${fmtLoad(m.loadavg)} (1, 5, 15 min)${m.loadavg[0] > m.cores ? `: busier than its ${m.cores} cores, times are inflated` : ''}`,
  ].join('\n')
}
