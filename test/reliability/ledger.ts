/**
 * The reliability suite's counts. Each test appends what it did (a fault injected and whether kpi
 * survived it, inputs tried, leaks found) as one JSON line to the ledger file; the suite's script
 * (scripts/reliability.sh) sums them into its closing line. A line per event, appended, so test
 * files running in parallel worker processes never overwrite each other.
 */
import {appendFileSync, mkdirSync} from 'node:fs'
import {dirname, resolve} from 'node:path'

export const LEDGER = resolve(process.env.KPI_RELIABILITY_LEDGER ?? '.run/reliability/ledger.jsonl')

export interface LedgerEntry {
  /** test file and case, for finding what a count came from */
  test: string
  faults?: number
  survived?: number
  inputs?: number
  leaks?: number
}

function append(e: LedgerEntry): void {
  mkdirSync(dirname(LEDGER), {recursive: true})
  appendFileSync(LEDGER, JSON.stringify(e) + '\n')
}

/**
 * A fault was injected: call before the checks, then `survived()` only after every check passed
 * (kpi completed or failed cleanly, destination consistent, rerun completed). A regression shows as
 * a failed test and as survived < faults in the summary.
 */
export function faultInjected(test: string): {survived: () => void} {
  append({test, faults: 1})
  let done = false
  return {
    survived: () => {
      if (done) return
      done = true
      append({test, survived: 1})
    },
  }
}

export const inputsTried = (test: string, n: number): void => append({test, inputs: n})

/** Leaks found (0 is recorded too, so the ledger shows the scan ran). */
export const leaksFound = (test: string, n: number): void => append({test, leaks: n})

/** Counts from a scaled budget: KPI_RELIABILITY_SCALE multiplies the bounded CI defaults. */
export function budget(n: number): number {
  const scale = Number(process.env.KPI_RELIABILITY_SCALE ?? '1')
  return Math.max(1, Math.round(n * (Number.isFinite(scale) && scale > 0 ? scale : 1)))
}
