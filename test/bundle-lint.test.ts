import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdir, mkdtemp, readFile, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {promisify} from 'node:util'
import {beforeAll, describe, expect, it} from 'vitest'
import {bundleImages, checkBundle, loadBundle, mapBundleImages, parseBundle, serializeBundle} from '../src/bundle/index.js'
import {isKpiError, KpiError} from '../src/errors.js'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..')
const validDir = join(root, 'test/fixtures/bundles/valid')
let valid = ''

/** Writes a variant of the valid fixture (text edited by `edit`) into a fresh directory. */
async function variant(edit: (text: string) => string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kpi-bundle-'))
  await writeFile(join(dir, 'bundle.yaml'), edit(valid))
  return dir
}

async function loadError(path: string): Promise<KpiError> {
  const e = await loadBundle(path).then(() => undefined, (err: unknown) => err)
  if (!isKpiError(e)) throw new Error(`expected a KpiError, got ${String(e)}`)
  expect(e.kind).toBe('input')
  return e
}

/** Line (1-based) of the first line of `text` containing `needle`. */
const lineOf = (text: string, needle: string): number => text.split('\n').findIndex((l) => l.includes(needle)) + 1

const runImage = 'registry.example/stacks/run@sha256:acba25512100f80b56fc3ccd14c65be55d94800cda77585c5f41a887e398f9be'

beforeAll(async () => {
  valid = await readFile(join(validDir, 'bundle.yaml'), 'utf8')
})

describe('loadBundle', () => {
  it('loads a valid bundle directory and walks its images in a stable order', async () => {
    const loaded = await loadBundle(validDir)
    expect(loaded.dir).toBe(validDir)
    expect(loaded.file).toBe(join(validDir, 'bundle.yaml'))
    expect(loaded.raw).toBe(valid)
    const b = loaded.bundle
    expect(b.metadata).toMatchObject({name: 'build-service', version: '1.4.0'})
    expect(b.builders[0]?.order[1]?.group[0]).toEqual({id: 'example/nodejs', version: '2.0.0', optional: false})
    // an unknown descriptive field under metadata is a warning, not an error
    expect(loaded.warnings?.map((w) => w.path)).toEqual(['metadata.description'])
    expect(bundleImages(b).map((i) => i.path)).toEqual([
      'kpack.images.controller', 'kpack.images.webhook', 'kpack.images.buildInit', 'kpack.images.buildWaiter',
      'kpack.images.rebase', 'kpack.images.completion', 'lifecycle.image',
      'stacks[0].buildImage', 'stacks[0].runImage', 'stores[0].sources[0].image', 'stores[0].sources[1].image',
    ])
    expect(bundleImages(b)[8]?.ref).toBe(runImage)
  })

  it('loads a single file too, and a BundleLock with origins', async () => {
    expect((await loadBundle(join(validDir, 'bundle.yaml'))).dir).toBeUndefined()
    const dir = await variant((t) => t.replace('kind: Bundle', 'kind: BundleLock') + `origins:\n  ${runImage}: src.example/run@sha256:${'a'.repeat(64)}\n`)
    const b = (await loadBundle(dir)).bundle
    expect(b.kind).toBe('BundleLock')
    expect(Object.keys(b.origins ?? {})).toEqual([runImage])
  })

  it('rewrites every reference with mapBundleImages and serializes deterministically', async () => {
    const b = (await loadBundle(validDir)).bundle
    const moved = mapBundleImages(b, (ref, path) => ref.replace('registry.example/', `dst.example/${path.startsWith('stacks') ? 'st/' : ''}`))
    expect(bundleImages(b)[0]?.ref.startsWith('registry.example/')).toBe(true) // original untouched
    const refs = bundleImages(moved).map((i) => i.ref)
    expect(refs.every((r) => r.startsWith('dst.example/'))).toBe(true)
    expect(refs[8]).toBe(runImage.replace('registry.example/', 'dst.example/st/'))
    const text = serializeBundle(moved)
    expect(serializeBundle(parseBundle(text))).toBe(text)
    expect(parseBundle(text)).toEqual(moved)
    expect(text.startsWith('apiVersion: kpi/v1alpha1\nkind: Bundle\nmetadata:\n  name: build-service\n  version: 1.4.0\n')).toBe(true)
  })

  it('names the path it tried when the file is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-bundle-'))
    let e = await loadError(dir)
    expect(e.message).toBe(`${join(dir, 'bundle.yaml')}: no bundle.yaml in the bundle directory`)
    e = await loadError(join(dir, 'nope.yaml'))
    expect(e.message).toContain(join(dir, 'nope.yaml'))
    expect(e.hint).toContain('bundle.yaml')
  })

  it('reports a YAML syntax error with its line', async () => {
    const dir = await variant((t) => t.replace('  version: 0.16.1\n', '  version: [0.16.1\n'))
    const e = await loadError(dir)
    expect(e.message).toMatch(new RegExp(`^${join(dir, 'bundle.yaml')}:\\d+:\\d+: YAML syntax: `))
    const line = Number(/bundle\.yaml:(\d+):/.exec(e.message)?.[1])
    // the parser notices the unclosed flow sequence on the line or just after
    expect(line).toBeGreaterThanOrEqual(lineOf(valid, 'version: 0.16.1'))
    expect(line).toBeLessThanOrEqual(lineOf(valid, 'version: 0.16.1') + 2)
  })

  it('rejects a reference without digest, naming file:line:col and field, with a hint to pin it', async () => {
    const dir = await variant((t) => t.replace(runImage, 'registry.example/stacks/run:1.0'))
    const e = await loadError(dir)
    const line = lineOf(valid, 'runImage:')
    expect(e.message).toBe(`${join(dir, 'bundle.yaml')}:${line}:15: stacks[0].runImage: reference "registry.example/stacks/run:1.0" is not pinned by digest`)
    expect(e.hint).toBe('pin it: kpi bundle lock BUNDLE resolves every tag to its digest (or write registry.example/stacks/run:1.0@sha256:<digest>)')
    expect(e.message).not.toContain('\n')
  })

  it('rejects a malformed digest and an invalid name', async () => {
    const dir = await variant((t) => t.replace(/(stacks\/run@sha256:)[0-9a-f]{64}/, '$1ABC').replace('kpack/webhook@', 'kpack/WebHook@'))
    const e = await loadError(dir)
    expect(e.message).toMatch(/^.*bundle\.yaml: 2 problems in the bundle\n/)
    expect(e.message).toContain('stacks[0].runImage: reference "registry.example/stacks/run@sha256:ABC" has an invalid digest')
    expect(e.message).toContain('kpack.images.webhook: reference "registry.example/kpack/WebHook@')
    expect(e.message).toContain('repository names must be lowercase')
  })

  it('names an unknown stack in a builder and lists the known ones', async () => {
    const dir = await variant((t) => t.replace('    stack: base', '    stack: bsae'))
    const e = await loadError(dir)
    expect(e.message).toBe(`${join(dir, 'bundle.yaml')}:${lineOf(valid, '    stack: base')}:12: builders[0].stack: unknown stack "bsae"; known stacks: base`)
    expect(e.hint).toBe('did you mean "base"?')
  })

  it('rejects duplicate names, pointing at the first', async () => {
    const store = '  - name: default\n    sources:\n      - image: registry.example/buildpacks/go@sha256:' + 'b'.repeat(64) + '\n'
    const dir = await variant((t) => t.replace('builders:\n', `${store}builders:\n`))
    const e = await loadError(dir)
    expect(e.message).toContain(`stores[1].name: duplicate store name "default" (first at line ${lineOf(valid, '- name: default')})`)
  })

  it('rejects a builder namespace longer than a namespace name may be (63)', async () => {
    const ok = await variant((t) => t.replace('    stack: base\n', `    namespace: ${'a'.repeat(63)}\n    stack: base\n`))
    expect((await loadBundle(ok)).bundle.builders[0]!.namespace).toHaveLength(63)
    const dir = await variant((t) => t.replace('    stack: base\n', `    namespace: ${'a'.repeat(64)}\n    stack: base\n`))
    const e = await loadError(dir)
    expect(e.message).toContain(`builders[0].namespace: "${'a'.repeat(64)}" is not a valid namespace name`)
  })

  it('rejects versions that are not semver, and suggests one', async () => {
    const dir = await variant((t) => t.replace('version: 1.4.0', 'version: v1.4').replace('version: 0.16.1', 'version: "0.16"'))
    const e = await loadError(dir)
    expect(e.message.split('\n')[0]).toMatch(/bundle\.yaml: 2 problems in the bundle$/)
    expect(e.message).toContain('metadata.version: "v1.4" is not a semantic version (MAJOR.MINOR.PATCH): write 1.4.0')
    expect(e.message).toContain('kpack.version: "0.16" is not a semantic version')
  })

  it('collects every problem: wrong types, missing fields, unknown top-level fields, empty order', async () => {
    const dir = await variant((t) =>
      t.replace('apiVersion: kpi/v1alpha1', 'apiVersion: kpi/v1')
        .replace(/ {4}rebase: .*\n/, '')
        .replace('  image: registry.example/buildpacks/lifecycle', '  image: 12\n  x: registry.example/buildpacks/lifecycle')
        .replace(/ {4}order:\n[\s\S]*$/, '    order: []\n')
        .replace('stacks:\n', 'stackz: []\nstacks:\n'))
    const r = await checkBundle(dir)
    expect(r.ok).toBe(false)
    const got = r.problems.map((p) => `${p.path}: ${p.message}`)
    expect(got).toEqual([
      'apiVersion: unsupported apiVersion "kpi/v1"',
      'kpack.images.rebase: missing required field',
      'lifecycle.image: expected a string, got 12',
      'stackz: unknown field "stackz"',
      'builders[0].order: builder order is empty',
    ])
    expect(r.problems.find((p) => p.path === 'stackz')?.hint).toBe('did you mean "stacks"?')
    expect(r.warnings.map((w) => w.path)).toEqual(['metadata.description', 'lifecycle.x'])
    const e = await loadError(dir)
    expect(e.message.split('\n')).toHaveLength(6)
  })

  it('another kind of document (the sample spec, a Kubernetes object) gets its apiVersion and kind named, and nothing else', async () => {
    const spec = join(root, 'bundles/sample/sample.yaml')
    const text = await readFile(spec, 'utf8')
    const r = await checkBundle(spec)
    expect(r.problems.map((p) => `${p.line}: ${p.path}: ${p.message}`)).toEqual([
      `${lineOf(text, 'apiVersion: kpi/imagegen-v1alpha1')}: apiVersion: unsupported apiVersion "kpi/imagegen-v1alpha1"`,
      `${lineOf(text, 'kind: SampleSpec')}: kind: unsupported kind "SampleSpec"`,
    ])
    expect(r.warnings).toEqual([])
    const deployment = await variant(() => 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1}\n')
    expect((await checkBundle(deployment)).problems.map((p) => p.path)).toEqual(['apiVersion', 'kind'])
  })

  it('says so when the file is empty or not a mapping', async () => {
    const empty = await variant(() => '# nothing\n')
    expect((await loadError(empty)).message).toContain('the bundle file is empty')
    const list = await variant(() => '- a\n- b\n')
    expect((await loadError(list)).message).toMatch(/bundle\.yaml:1:1: the bundle must be a YAML mapping$/)
  })
})

describe('kpi bundle lint', () => {
  const kpi = (args: string[]) =>
    run(process.execPath, [join(root, 'bin/run.js'), 'bundle', 'lint', ...args], {cwd: root}).then(
      ({stdout, stderr}) => ({code: 0, stdout, stderr}),
      (e: {code: number; stdout: string; stderr: string}) => ({code: e.code, stdout: e.stdout, stderr: e.stderr}),
    )
  const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('Error:'))

  beforeAll(async () => {
    // the CLI runs from dist/ (npm test builds it first; alone, run npm run build): never rebuilt
    // here, where other test files run it at the same time
    expect(existsSync(join(root, 'dist/kpi.cjs')), 'npm run build first').toBe(true)
  }, 300_000)

  it('prints a summary for a valid bundle', async () => {
    const r = await kpi([validDir])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('ok: build-service 1.4.0: 11 images, 1 stacks, 1 stores, 1 builders\n')
    expect(r.stderr).toContain('warning: ')
  })

  it('prints images and problems as JSON', async () => {
    const ok = await kpi([validDir, '--json'])
    expect(ok.code).toBe(0)
    const j = JSON.parse(ok.stdout) as {ok: boolean; name: string; version: string; images: Array<{path: string; ref: string}>; problems: unknown[]}
    expect(j).toMatchObject({ok: true, name: 'build-service', version: '1.4.0', problems: []})
    expect(j.images).toHaveLength(11)
    const dir = await variant((t) => t.replace(runImage, 'registry.example/stacks/run:1.0'))
    const bad = await kpi([dir, '--json'])
    expect(bad.code).toBe(3)
    const jb = JSON.parse(bad.stdout) as {ok: boolean; name: string; problems: Array<{path: string; line: number; hint: string}>}
    expect(jb.ok).toBe(false)
    expect(jb.name).toBe('build-service')
    expect(jb.problems).toEqual([expect.objectContaining({path: 'stacks[0].runImage', line: lineOf(valid, 'runImage:'), hint: expect.stringContaining('pin it:') as unknown})])
  })

  it('fails with one line and no stack trace for a missing digest', async () => {
    const dir = await variant((t) => t.replace(runImage, 'registry.example/stacks/run:1.0'))
    const r = await kpi([dir])
    expect(r.code).toBe(3)
    expect(r.stdout).toBe('')
    expect(errorLines(r.stderr)).toEqual([
      `Error: ${join(dir, 'bundle.yaml')}:${lineOf(valid, 'runImage:')}:15: stacks[0].runImage: reference "registry.example/stacks/run:1.0" is not pinned by digest: pin it: kpi bundle lock BUNDLE resolves every tag to its digest (or write registry.example/stacks/run:1.0@sha256:<digest>)`,
    ])
    expect(r.stderr).not.toContain('    at ')
  })

  it('fails with one line for a missing file and for a syntax error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-bundle-'))
    await mkdir(join(dir, 'empty'))
    for (const [arg, expected] of [
      [join(dir, 'nope'), `Error: ${join(dir, 'nope')}: bundle not found`],
      [join(dir, 'empty'), `Error: ${join(dir, 'empty', 'bundle.yaml')}: no bundle.yaml`],
    ] as const) {
      const r = await kpi([arg])
      expect(r.code).toBe(3)
      expect(errorLines(r.stderr)).toHaveLength(1)
      expect(errorLines(r.stderr)[0]).toContain(expected)
      expect(r.stderr).not.toContain('    at ')
    }
    const syn = await variant((t) => t.replace('  version: 0.16.1\n', '  version: [0.16.1\n'))
    const r = await kpi([syn])
    expect(r.code).toBe(3)
    expect(errorLines(r.stderr)[0]).toMatch(/bundle\.yaml:\d+:\d+: YAML syntax: /)
    expect(r.stderr).not.toContain('    at ')
  })

  it('lists every problem under a first line that counts them', async () => {
    const dir = await variant((t) => t.replace('    stack: base', '    stack: nope').replace('version: 1.4.0', 'version: 1.4'))
    const r = await kpi([dir])
    expect(r.code).toBe(3)
    const lines = r.stderr.split('\n')
    const i = lines.findIndex((l) => l.startsWith('Error:'))
    expect(lines[i]).toBe(`Error: ${join(dir, 'bundle.yaml')}: 2 problems in the bundle`)
    expect(lines[i + 1]).toContain('metadata.version: "1.4" is not a semantic version')
    expect(lines[i + 2]).toContain('builders[0].stack: unknown stack "nope"; known stacks: base')
  })
})
