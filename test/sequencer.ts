/**
 * Runs the longest test files first. With two workers and a handful of files that each start a
 * control plane and take one to two minutes, the order decides the wall time: the default order on
 * a clean clone (largest file first) left the demo for last, one worker idle for its two minutes.
 * Seconds come from vitest's own cache when it has them (a warm machine) and otherwise from the
 * table below (measured in CI; a file it lacks counts as short). Only the order changes: every
 * file still runs, and the two projects (main and reliability) share the workers.
 */
import {relative} from 'node:path'
import {BaseSequencer, type TestSpecification} from 'vitest/node'

/** Seconds per file in a CI run on 2 cores; files under ~10 s are left out. */
const measured: Record<string, number> = {
  'test/demo.test.ts': 115,
  'test/upgrade-failures.test.ts': 93,
  'test/upgrade-kpack.test.ts': 65,
  'test/install-cli.test.ts': 55,
  'test/upgrade-cli.test.ts': 45,
  'test/kpack-images.test.ts': 42,
  'test/sandbox-updown.test.ts': 41,
  'test/kpack-real.test.ts': 31,
  'test/bundle-artifact.test.ts': 22,
  'test/relocate.test.ts': 20,
  'test/import-kp-kpack.test.ts': 19,
  'test/archive-cli.test.ts': 15,
  'test/kpack-platform.test.ts': 14,
  'test/kp-import-compare.test.ts': 12,
  'test/reliability/upgrade.test.ts': 200,
  'test/reliability/network.test.ts': 145,
  'test/reliability/cluster.test.ts': 85,
  'test/reliability/secrets.test.ts': 53,
  'test/reliability/archive.test.ts': 29,
  'test/reliability/fuzz.test.ts': 19,
  'test/reliability/tls.test.ts': 13,
}

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const byDefault = await super.sort(files)
    const seconds = (f: TestSpecification): number => {
      const path = relative(f.project.config.root, f.moduleId)
      const cached = this.ctx.cache.getFileTestResults(`${f.project.name}:${path}`)?.duration
      return cached !== undefined ? cached / 1000 : (measured[path] ?? 0)
    }
    // stable: files of equal weight keep the default order
    return byDefault.map((f, i) => ({f, i, s: seconds(f)})).sort((a, b) => b.s - a.s || a.i - b.i).map((x) => x.f)
  }
}
