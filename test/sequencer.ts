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

/** Seconds per file in a clean-clone CI run on 2 quiet cores (2026-12-02); files under 8 s are left out. */
const measured: Record<string, number> = {
  'test/reliability/network.test.ts': 107,
  'test/demo.test.ts': 98,
  'test/upgrade-failures.test.ts': 95,
  'test/reliability/upgrade.test.ts': 85,
  'test/upgrade-kpack.test.ts': 56,
  'test/reliability/cluster.test.ts': 53,
  'test/kpack-real.test.ts': 47,
  'test/kpack-images.test.ts': 41,
  'test/install-cli.test.ts': 39,
  'test/sandbox-updown.test.ts': 37,
  'test/kube-client.test.ts': 36,
  'test/reliability/secrets.test.ts': 36,
  'test/upgrade-cli.test.ts': 34,
  'test/kpack-platform.test.ts': 30,
  'test/reliability/fuzz.test.ts': 27,
  'test/bundle-artifact.test.ts': 27,
  'test/import-kp-kpack.test.ts': 27,
  'test/reliability/archive.test.ts': 25,
  'test/kp-import-compare.test.ts': 20,
  'test/relocate.test.ts': 17,
  'test/render-apply.test.ts': 17,
  'test/archive-cli.test.ts': 17,
  'test/podrunner.test.ts': 17,
  'test/controlplane-capacity.test.ts': 15,
  'test/controlplane.test.ts': 14,
  'test/reliability/tls.test.ts': 10,
  'test/archive-registry.test.ts': 9,
  'test/relocate-options.test.ts': 8,
  'test/credential-helpers.test.ts': 8,
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
