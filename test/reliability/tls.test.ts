/**
 * TLS to registries: verified by default; skipped only for a registry the user names with
 * --insecure-registry (or for all with --insecure-skip-tls-verify), with a warning on every run.
 * (TLS to the Kubernetes API is checked in secrets.test.ts, which has the control plane.)
 */
import {mkdtemp} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startSandbox, type Sandbox} from '../../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi, type CliResult} from '../helpers/cli.js'
import {faultInjected} from './ledger.js'

let work: string
let sb: Sandbox
let n = 0

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-tls-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']})
})

afterAll(async () => {
  await sb?.stop()
})

const relocate = (...flags: string[]): Promise<CliResult> =>
  kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', `${sb.airgap.host}/tls-${n++}`, '--lock-output', join(work, `lock-${n}.yaml`), ...flags], sb.env)
const warnings = (r: CliResult) => r.stderr.split('\n').filter((l) => l.startsWith('Warning:'))

describe('TLS to registries', () => {
  it('is verified by default: a registry whose CA is not trusted is refused in one line that names it', async () => {
    const ledger = faultInjected('tls untrusted registry')
    const r = await relocate()
    const line = expectCleanFailure(r)
    expect(line).toContain(sb.airgap.host)
    expect(line).toMatch(/TLS certificate .* not trusted/)
    expect(line).toContain('--insecure-registry')
    expect(r.code).toBe(5)
    // trusting its CA makes it work, with no warning
    const ok = await relocate('--ca-cert', sb.caFile)
    expect(ok.code, ok.stderr).toBe(0)
    expect(warnings(ok)).toEqual([])
    ledger.survived()
  })

  it('--insecure-registry HOST skips verification for that registry only, with a warning on every run', async () => {
    const ledger = faultInjected('tls insecure one registry')
    for (let i = 0; i < 2; i++) {
      const r = await relocate('--insecure-registry', sb.airgap.host)
      expect(r.code, r.stderr).toBe(0)
      expect(warnings(r)).toEqual([`Warning: the TLS certificate of registry ${sb.airgap.host} is not verified (--insecure-registry): anyone on the network path can impersonate it`])
    }
    // naming another registry changes nothing for this one
    const other = await relocate('--insecure-registry', '127.0.0.1:1')
    expect(expectCleanFailure(other)).toMatch(/TLS certificate .* not trusted/)
    expect(warnings(other)).toHaveLength(1)
    ledger.survived()
  })

  it('--insecure-skip-tls-verify skips it for every registry, and says so every run', async () => {
    // a second run (into another repository) says so again
    for (let i = 0; i < 2; i++) {
      const r = await relocate('--insecure-skip-tls-verify')
      expect(r.code, r.stderr).toBe(0)
      expect(warnings(r)).toEqual(['Warning: TLS certificates of every registry are not verified (--insecure-skip-tls-verify): anyone on the network path can impersonate them'])
    }
  })
})
