import {defineConfig} from 'vitest/config'
import LongestFirst from './test/sequencer.js'

// Two projects over one pool of workers: `main` (npm test, the default) and `reliability`
// (faults, fuzzed input, secret scans; `npm run test:reliability` runs it alone and sums the counts
// its tests write to .run/reliability/ledger.jsonl). Sharing the workers lets short files of one
// fill the gaps the long files of the other leave.
export default defineConfig({
  test: {
    pool: 'forks',
    // Test files share their worker's module cache: each file would otherwise import kpi's
    // modules anew (import time summed over a CI run 61 s -> 32 s, the run 760 -> 728 s).
    // Module state that outlives a file is counted per process (buffer pool, started processes),
    // and the tests read deltas of it; a test that sets process.env restores it.
    isolate: false,
    fileParallelism: true,
    maxWorkers: 2,
    hookTimeout: 300_000,
    reporters: ['default'],
    sequence: {sequencer: LongestFirst},
    projects: [
      {extends: true, test: {name: 'main', include: ['test/**/*.test.ts'], exclude: ['test/reliability/**', '**/node_modules/**'], testTimeout: 120_000}},
      {extends: true, test: {name: 'reliability', include: ['test/reliability/**/*.test.ts'], testTimeout: 180_000}},
    ],
  },
})
