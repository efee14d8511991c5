import {execFile} from 'node:child_process'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'

const run = promisify(execFile)
const floorDir = fileURLToPath(new URL('../tools/floor', import.meta.url))

// The benchmark's floor (tools/floor) is Go, and its own test is Go's: what it checks (Range parts
// under a budget shared by blobs) is what a wrong floor would get wrong silently, as a slower
// floor or one that hangs the benchmark.
describe('bench: the floor', () => {
  it('passes its Go tests: ranged parts come back in order under a budget shared by many blobs', async () => {
    const {stdout} = await run('go', ['test', '-count=1', '-v', '.'], {cwd: floorDir, timeout: 170_000})
    expect(stdout).toMatch(/--- PASS: TestRangedBudgetAcrossBlobs/)
    expect(stdout).toMatch(/^ok\s/m)
  }, 180_000)
})
