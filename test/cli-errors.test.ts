/**
 * Bad flags and unwritable outputs fail at once, in one line, before any registry is asked or
 * any byte moves: these runs point at a registry port nobody listens on, so a check made late
 * would show up as a network error instead.
 */
import {mkdtemp, mkdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {expectCleanFailure, kpi} from './helpers/cli.js'


describe('kpi relocate refuses bad outputs and flag combinations before moving anything', () => {
  it('names an unwritable --lock-output directory', async () => {
    const r = await kpi(['relocate', '-b', 'test/fixtures/bundles/valid', '--to-repo', '127.0.0.1:1/x', '--lock-output', '/nonexistent/dir/lock.yaml'])
    const line = expectCleanFailure(r)
    expect(line).toContain('--lock-output /nonexistent/dir/lock.yaml')
    expect(line).not.toContain('127.0.0.1:1')
    expect(r.code).toBe(3)
  })

  it('names an unwritable --to-tar directory', async () => {
    const line = expectCleanFailure(await kpi(['relocate', '-b', 'test/fixtures/bundles/valid', '--to-tar', '/nonexistent/x.tar']))
    expect(line).toContain('--to-tar /nonexistent/x.tar')
  })

  it('refuses a split size too small to be meant', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-cli-'))
    const r = await kpi(['relocate', '-b', 'test/fixtures/bundles/valid', '--to-tar', join(dir, 'x.tar'), '--split', '1k'])
    expect(expectCleanFailure(r)).toContain('--split 1k is too small')
    expect(r.code).toBe(2)
  })

  it('refuses --lock-output with --to-tar, which would write no lock', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-cli-'))
    const r = await kpi(['relocate', '-b', 'test/fixtures/bundles/valid', '--to-tar', join(dir, 'x.tar'), '--lock-output', join(dir, 'lock.yaml')])
    expect(expectCleanFailure(r)).toContain('--lock-output goes with --to-repo')
    expect(r.code).toBe(2)
  })

  it('refuses the archive flags (--since, --resume, --split, --page-cache) without --to-tar, which would ignore them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-cli-'))
    const toRepo = ['--to-repo', '127.0.0.1:1/x', '--lock-output', join(dir, 'lock.yaml')]
    const since = await kpi(['relocate', '-b', 'test/fixtures/bundles/valid', ...toRepo, '--since', 'test/fixtures/bundles/valid'])
    expect(expectCleanFailure(since)).toContain('--since goes with --to-tar')
    expect(since.code).toBe(2)
    const more = await kpi(['relocate', '--from-tar', join(dir, 'x.tar'), ...toRepo, '--resume', '--split', '4GiB'])
    expect(expectCleanFailure(more)).toContain('--resume, --split go with --to-tar')
    expect(more.code).toBe(2)
  })

  it('refuses --from-oci-layout without --to-repo', async () => {
    const r = await kpi(['relocate', '-b', 'test/fixtures/bundles/valid', '--from-oci-layout', '/tmp', '--to-tar', '/tmp/x.tar'])
    expect(expectCleanFailure(r)).toContain('--from-oci-layout goes with --to-repo')
  })
})

describe('kpi tar verify names what it was given', () => {
  it('says a directory is not an archive', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-cli-'))
    await mkdir(join(dir, 'sub'))
    const r = await kpi(['tar', 'verify', join(dir, 'sub')])
    expect(expectCleanFailure(r)).toContain('is not an archive file (it is a directory)')
    expect(r.code).toBe(3)
  })
})

describe('kpi bundle push names a bad --to-repo as a flag problem', () => {
  it('exits 2 naming --to-repo, before any registry is asked', async () => {
    const r = await kpi(['bundle', 'push', 'test/fixtures/bundles/valid', '--to-repo', '127.0.0.1:1/Platform/build-service'])
    expect(expectCleanFailure(r)).toContain('--to-repo "127.0.0.1:1/Platform/build-service" is not a repository: repository names must be lowercase')
    expect(r.code).toBe(2)
  })
})

describe('numbers and durations from the command line and the environment', () => {
  it('kpi rollback takes a revision of digits only, before any cluster is asked', async () => {
    for (const bad of ['0x2', '1e1', ' 3', '2.0', '0']) {
      const r = await kpi(['rollback', bad], {KUBECONFIG: '/nonexistent/kubeconfig'})
      expect(r.code, `${bad}: ${r.stderr}`).toBe(2)
      expect(expectCleanFailure(r)).toContain(`REVISION "${bad}" is not a revision number`)
    }
  })

  it('takes KPI_REGISTRY_TIMEOUT set but empty as unset', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-cli-'))
    const r = await kpi(['relocate', '-b', join(dir, 'missing'), '--to-tar', join(dir, 'x.tar')], {KPI_REGISTRY_TIMEOUT: ''})
    const line = expectCleanFailure(r)
    expect(line).not.toContain('KPI_REGISTRY_TIMEOUT')
    expect(line).toContain(join(dir, 'missing'))
    // a value that is there and wrong is still named
    expect(expectCleanFailure(await kpi(['relocate', '-b', join(dir, 'missing'), '--to-tar', join(dir, 'x.tar')], {KPI_REGISTRY_TIMEOUT: 'soon'}))).toContain('KPI_REGISTRY_TIMEOUT')
  })
})
