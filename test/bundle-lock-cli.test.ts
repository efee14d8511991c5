/**
 * `kpi bundle lock` and friends at the command line, on bundles that need no registry (every
 * reference already pinned): where the pinned bundle is written. Run `npm run build` first.
 */
import {copyFile, mkdtemp, readFile, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {describe, expect, it} from 'vitest'
import {parseBundle} from '../src/bundle/index.js'
import {kpi} from './helpers/cli.js'

const validFile = resolve(import.meta.dirname, 'fixtures/bundles/valid/bundle.yaml')

describe('kpi bundle lock in place', () => {
  it('rewrites a bundle file whose name does not end in .yaml where it is, not as a directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-lock-'))
    const file = join(dir, 'build-service.bundle')
    await copyFile(validFile, file)
    const r = await kpi(['bundle', 'lock', file, '--json'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ok: true, bundle: file, pinned: []})
    expect((await stat(file)).isFile()).toBe(true)
    expect(parseBundle(await readFile(file, 'utf8')).metadata.name).toBe('build-service')
  })
})

describe('--json: stdout carries one JSON document and stderr only JSON event lines', () => {
  const jsonLines = (stderr: string) => stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as {v: number; event: {type: string; message: string}})

  it('says an unverified registry as a warning event, not as a line of text', async () => {
    const out = await mkdtemp(join(tmpdir(), 'kpi-lock-'))
    const r = await kpi(['bundle', 'lock', validFile, '-o', out, '--json', '--insecure-registry', 'registry.example'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ok: true})
    expect(jsonLines(r.stderr)).toEqual([{v: 1, event: {type: 'warning', message: expect.stringContaining('registry registry.example is not verified') as unknown}}])
  })

  it('a bad flag or a missing argument is the usage failure document, exit 2', async () => {
    for (const args of [['bundle', 'lint', '--json'], ['relocate', '-b', validFile, '--to-repo', '127.0.0.1:1/x', '--lock-output', 'l.yaml', '--lock-format', 'nope', '--json']]) {
      const r = await kpi(args)
      expect(r.code, r.stderr).toBe(2)
      // (vitest's NODE_ENV=test makes oclif warn that the command did not parse: Node's own lines)
      expect(r.stderr.split('\n').filter((l) => l && !/^\((node:\d+|Use `node)/.test(l))).toEqual([])
      const doc = JSON.parse(r.stdout) as {ok: boolean; error: {kind: string; message: string}}
      expect(doc).toMatchObject({ok: false, error: {kind: 'usage'}})
      expect(doc.error.message).not.toContain('\n')
    }
  })
})

describe('kpi bundle import-kp -o', () => {
  it('refuses to write over the descriptor or the --kpack-from bundle it reads, before anything else', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-import-'))
    const descriptor = join(dir, 'descriptor.yaml')
    await copyFile(validFile, descriptor)
    const before = await readFile(descriptor, 'utf8')
    const r = await kpi(['bundle', 'import-kp', descriptor, '-o', descriptor, '--kpack-from', validFile])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toContain(`-o ${descriptor} would overwrite the descriptor ${descriptor}`)
    expect(await readFile(descriptor, 'utf8')).toBe(before)
    // a directory -o writes bundle.yaml in it: the --kpack-from bundle, here
    const bundleDir = resolve(import.meta.dirname, 'fixtures/bundles/valid')
    const r2 = await kpi(['bundle', 'import-kp', descriptor, '-o', bundleDir, '--kpack-from', bundleDir])
    expect(r2.code, r2.stderr).toBe(2)
    expect(r2.stderr).toContain(`would overwrite --kpack-from ${bundleDir}`)
  })
})
