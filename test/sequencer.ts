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

/** Seconds per file in a clean-clone CI run on 2 quiet cores (2026-12-03); files under 8 s are left out. */
const measured: Record<string, number> = {
  'test/reliability/network.test.ts': 148,
  'test/reliability/upgrade.test.ts': 138,
  'test/upgrade-kpack.test.ts': 90,
  'test/demo.test.ts': 86,
  'test/upgrade-failures.test.ts': 81,
  'test/reliability/secrets.test.ts': 66,
  'test/reliability/cluster.test.ts': 65,
  'test/kpack-real.test.ts': 60,
  'test/install-cli.test.ts': 53,
  'test/upgrade-cli.test.ts': 52,
  'test/reliability/archive.test.ts': 43,
  'test/kube-client.test.ts': 43,
  'test/reliability/fuzz.test.ts': 39,
  'test/kpack-images.test.ts': 36,
  'test/kpack-platform.test.ts': 33,
  'test/sandbox-updown.test.ts': 31,
  'test/relocate.test.ts': 29,
  'test/import-kp-kpack.test.ts': 28,
  'test/bundle-artifact.test.ts': 27,
  'test/archive-cli.test.ts': 27,
  'test/archive-registry.test.ts': 22,
  'test/kp-import-compare.test.ts': 21,
  'test/relocate-options.test.ts': 16,
  'test/reliability/tls.test.ts': 16,
  'test/render-apply.test.ts': 15,
  'test/credential-helpers.test.ts': 14,
  'test/podrunner.test.ts': 13,
  'test/bundle-import-kp.test.ts': 12,
  'test/controlplane.test.ts': 11,
  'test/controlplane-capacity.test.ts': 11,
  'test/cli-conventions.test.ts': 10,
  'test/referrers-api.test.ts': 9,
  'test/oci-env.test.ts': 9,
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
