import {defineConfig} from 'vitest/config'

// The reliability suite (faults, bad input, secrets): `npm run test:reliability`, which sums the
// counts the tests write to .run/reliability/ledger.jsonl. The main config excludes these files.
export default defineConfig({
  test: {
    include: ['test/reliability/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ['default'],
  },
})
