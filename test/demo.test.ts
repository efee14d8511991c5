/**
 * `kpi demo` (what `npm run demo` runs) end to end: the sandbox, v1 across the air gap as one
 * archive, an install that waits for kpack's own controller to make every stack, store and builder
 * Ready (--wait=ready, the default), twice; v2 as a delta, diff, upgrade, a failed upgrade rolled
 * back by itself, and `kpi rollback 1`. Run `npm run build` first.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {kpi} from './helpers/cli.js'

describe('kpi demo', () => {
  it('carries v1 across the air gap, installs it Ready by kpack (again: nothing changed), upgrades to v2, survives a failed upgrade, rolls back to 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-demo-'))
    const r = await kpi(['demo', '--dir', dir])
    if (r.code !== 0) console.error(r.stdout.slice(-4000), r.stderr.slice(-2000))
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain('not built')
    expect(r.stdout).toMatch(/Installed build-service 1\.0\.0 \(kpack 0\.16\.1\) as revision 1/)
    expect(r.stdout).toMatch(/0 objects changed/)
    expect(r.stdout).toMatch(/Upgraded build-service 1\.0\.0 \(kpack 0\.16\.1, revision \d+\) to 1\.1\.0 \(kpack 0\.17\.2\)/)
    expect(r.stdout).toMatch(/Rolled back to revision 1: build-service 1\.0\.0 \(kpack 0\.16\.1\)/)
    // the failed upgrade's gate judged the greedy pod hopeless (kpi history shows why), within the default timeout
    expect(r.stdout).toMatch(/revision 3: stage controllers: Deployment kpack\/kpack-controller failed: pod kpack-controller-\S+ can never be scheduled: it requests cpu 64/)
    expect(r.stderr).toMatch(/warning: Deployment kpack\/kpack-controller: no node can run its pods: it requests cpu 64/)
    // install, install again, upgrade, rollback: each ends with kpack's own word on every resource
    expect(r.stdout.match(/kpack readiness: every stack, store and builder is Ready/g)).toHaveLength(4)
    expect(r.stdout).toContain('=== Demo finished')
    await rm(dir, {recursive: true, force: true})
  }, 600_000)
})
