/**
 * `kpi demo` (what `npm run demo` runs) end to end: the sandbox, v1 across the air gap as one
 * archive, and an install that waits for kpack's own controller to make every stack, store and
 * builder Ready (--wait=ready, the default), twice. Run `npm run build` first.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {kpi} from './helpers/cli.js'

describe('kpi demo', () => {
  it('carries v1 across the air gap and installs it Ready by kpack, then again with nothing changed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-demo-'))
    const r = await kpi(['demo', '--dir', dir])
    if (r.code !== 0) console.error(r.stdout.slice(-4000), r.stderr.slice(-2000))
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain('not built')
    expect(r.stdout).toMatch(/Installed build-service 1\.0\.0 \(kpack 0\.16\.1\) as revision 1/)
    expect(r.stdout.match(/kpack readiness: every stack, store and builder is Ready/g)).toHaveLength(2)
    expect(r.stdout).toMatch(/0 objects changed/)
    expect(r.stdout).toContain('=== Demo finished')
    await rm(dir, {recursive: true, force: true})
  }, 600_000)
})
