import {defineConfig} from 'vitest/config'
import LongestFirst from './test/sequencer.js'

// Two projects over one pool of workers: `main` (npm test, the default) and `reliability`
// (faults, fuzzed input, secret scans; `npm run test:reliability` runs it alone and sums the counts
// its tests write to .run/reliability/ledger.jsonl). Sharing the workers lets short files of one
// fill the gaps the long files of the other leave.
export default defineConfig({
  test: {
    pool: 'forks',
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
