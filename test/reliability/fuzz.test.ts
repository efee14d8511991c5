/**
 * Bad input, fuzzed: valid bundles, locks and values files mutated by fast-check (byte edits,
 * wrong types, missing and unknown fields, duplicate keys, non-UTF-8 bytes) plus hostile files
 * (alias bombs, deep nesting, huge files). Every input must end either accepted (and then render
 * without a crash) or with a KpiError whose message names the file; never another exception, a
 * hang or a stack trace. Most inputs go through the loaders in-process, for speed; a sample goes
 * through the built CLI to check the exit code and the one `Error:` line.
 */
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import fc from 'fast-check'
import {stringify} from 'yaml'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {parseKpDescriptor} from '../../src/bundle/kp/descriptor.js'
import {kpToBundle, type KpBase} from '../../src/bundle/kp/to-bundle.js'
import {loadBundle} from '../../src/bundle/load.js'
import {readTextFile} from '../../src/textfile.js'
import type {Bundle} from '../../src/bundle/types.js'
import {formatError, isKpiError} from '../../src/errors.js'
import {renderPlatform} from '../../src/render/render.js'
import type {Values} from '../../src/values/types.js'
import {loadValues} from '../../src/values/load.js'
import {toYaml} from '../../src/render/yaml.js'
import {expectCleanFailure, kpi, type CliResult} from '../helpers/cli.js'
import {budget, inputsTried} from './ledger.js'
import {badInput} from './mutate.js'

const fixtures = new URL('../fixtures/', import.meta.url).pathname
let work: string
let validBundle: Buffer
let validLock: Buffer
let validValues: Buffer
let validKp: Buffer
let kpBase: KpBase
let lock: Bundle
let values: Values
const seed = process.env.KPI_FUZZ_SEED ? Number(process.env.KPI_FUZZ_SEED) : undefined

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-fuzz-'))
  validBundle = await readFile(join(fixtures, 'bundles/valid/bundle.yaml'))
  validLock = await readFile(join(fixtures, 'render/lock-0.17.yaml'))
  validValues = await readFile(join(fixtures, 'render/values.yaml'))
  // the seeds themselves are valid: otherwise every "bad" input would be bad for one boring reason
  lock = (await loadBundle(join(fixtures, 'render/lock-0.17.yaml'))).bundle
  values = await loadValues(join(fixtures, 'render/values.yaml'))
  await loadBundle(join(fixtures, 'bundles/valid/bundle.yaml'))
  // a kp DependencyDescriptor (v1) naming the lock's images, as kp import -f reads it
  const s = lock.stacks[0]!
  validKp = Buffer.from(stringify({
    apiVersion: 'kp.kpack.io/v1',
    kind: 'DependencyDescriptor',
    defaultClusterLifecycle: 'default-lifecycle',
    defaultClusterStack: 'base',
    defaultClusterBuilder: 'base',
    clusterLifecycles: [{name: 'default-lifecycle', image: lock.lifecycle.image}],
    clusterBuildpacks: [{name: 'java', image: lock.stores[0]!.sources[0]!.image}],
    clusterStores: [{name: 'default', sources: lock.stores[0]!.sources}],
    clusterStacks: [{name: 'base', buildImage: {image: s.buildImage}, runImage: {image: s.runImage}}],
    clusterBuilders: [{name: 'base', clusterStack: 'base', clusterStore: 'default', order: lock.builders[0]!.order}],
  }))
  kpBase = {metadata: lock.metadata, kpack: lock.kpack, lifecycle: lock.lifecycle, from: 'the lock fixture'}
  kpToBundle(parseKpDescriptor(validKp.toString(), 'seed'), kpBase)
})

afterAll(async () => {
  await rm(work, {recursive: true, force: true})
})

/** A KpiError with one message and no stack; when `file` is given, the message names it. */
function expectKpiError(e: unknown, where: string, file?: string): void {
  if (!isKpiError(e)) throw new Error(`${where}: not a KpiError but ${(e as Error)?.name}: ${(e as Error)?.stack ?? String(e)}`)
  const line = formatError(e)
  expect(line.length).toBeGreaterThan(0)
  expect(line, 'no stack trace in the message').not.toMatch(/\n\s+at /)
  expect(line).not.toContain('[object Object]')
  if (file) expect(line, 'the message names the file').toContain(file)
}

/**
 * The outcome every input must have: refused by the loader with a KpiError naming the file, or
 * accepted, and then the next stage (render) either works or refuses with a KpiError too.
 */
async function cleanly<T>(file: string, load: () => Promise<T>, next?: (loaded: T) => unknown): Promise<'accepted' | 'refused'> {
  let loaded: T
  try {
    loaded = await load()
  } catch (e) {
    expectKpiError(e, file, file)
    return 'refused'
  }
  try {
    next?.(loaded)
  } catch (e) {
    expectKpiError(e, `${file} (render)`)
  }
  return 'accepted'
}

/** kpi's stderr holds its own lines only: no Node warnings, no stack trace. */
function expectOwnStderr(r: CliResult): void {
  for (const line of r.stderr.split('\n')) {
    if (!line) continue
    expect(line, r.stderr).toMatch(/^(Error: |Warning: | {2})/)
  }
}

let n = 0
const fresh = (name: string) => join(work, `${n++}-${name}`)

describe('fuzzed bad input, in-process', () => {
  const render = (b: Bundle, v: Values) => toYaml(renderPlatform(b, v).objects)
  const kinds = [
    {name: 'bundle', runs: 350, seedOf: () => validBundle, check: (f: string) => cleanly(f, () => loadBundle(f))},
    {name: 'lock', runs: 300, seedOf: () => validLock, check: (f: string) => cleanly(f, () => loadBundle(f), (l) => render(l.bundle, values))},
    {name: 'kp descriptor', runs: 250, seedOf: () => validKp, check: (f: string) => cleanly(f, async () => parseKpDescriptor(await readTextFile(f, 'descriptor'), f), (d) => kpToBundle(d, kpBase))},
    {name: 'values', runs: 350, seedOf: () => validValues, check: (f: string) => cleanly(f, () => loadValues(f), (v) => render(lock, v))},
  ]
  for (const k of kinds) {
    it(`${k.name}: every mutated ${k.name} file is accepted or refused with a KpiError naming it`, async () => {
      const runs = budget(k.runs)
      let tried = 0
      let refused = 0
      await fc.assert(fc.asyncProperty(badInput(k.seedOf()), async (bytes) => {
        const file = fresh(`${k.name}.yaml`)
        await writeFile(file, bytes)
        tried++
        if ((await k.check(file)) === 'refused') refused++
        await rm(file)
      }), {numRuns: runs, seed, endOnFailure: true})
      inputsTried(`fuzz ${k.name}`, tried)
      expect(tried).toBe(runs)
      // the mutations must mostly break the file, or this test would test little
      expect(refused / tried).toBeGreaterThan(0.5)
    })
  }
})

describe('fuzzed bad input through the CLI', () => {
  it('a sample of mutated locks and values files: exit non-zero with one Error: line and no stack trace, or render', async () => {
    const count = budget(12)
    const locks = fc.sample(badInput(validLock), {numRuns: count, seed})
    const vals = fc.sample(badInput(validValues), {numRuns: count, seed})
    const valuesFile = join(fixtures, 'render/values.yaml')
    const lockFile = join(fixtures, 'render/lock-0.17.yaml')
    const cases: Array<() => Promise<void>> = []
    let tried = 0
    const variants = [
      {name: 'lock', samples: locks, args: (f: string) => ['render', '-b', f, '-f', valuesFile]},
      {name: 'values', samples: vals, args: (f: string) => ['render', '-b', lockFile, '-f', f]},
    ]
    for (const v of variants) {
      for (const [i, bytes] of v.samples.entries()) {
        cases.push(async () => {
          const f = join(work, `cli-${v.name}-${i}.yaml`)
          await writeFile(f, bytes)
          const r = await kpi(v.args(f))
          tried++
          if (r.code !== 0) expect(expectCleanFailure(r)).toContain(f)
          expectOwnStderr(r)
        })
      }
    }
    // two at a time: each is a Node process start
    for (let i = 0; i < cases.length; i += 2) await Promise.all(cases.slice(i, i + 2).map((c) => c()))
    inputsTried('fuzz cli', tried)
    expect(tried).toBe(2 * count)
  })

  it('hostile files through bundle lint and render: one Error: line naming the file, exit code 3', async () => {
    const bomb = 'l0: &l0 [x,x,x,x,x,x,x,x,x]\n' + Array.from({length: 9}, (_, i) => `l${i + 1}: &l${i + 1} [${Array(9).fill(`*l${i}`).join(',')}]`).join('\n') + '\n'
    const hostileFiles: Record<string, Buffer> = {
      'bomb.yaml': Buffer.from(bomb),
      'values-bomb.yaml': Buffer.from(`a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\nregistry: {server: *d, repository: *d}\n`),
      'huge.yaml': Buffer.alloc(17 * 1024 * 1024, 0x61),
      'latin1.yaml': Buffer.concat([validLock.subarray(0, 100), Buffer.from([0xe9]), validLock.subarray(100)]),
      'dup.yaml': Buffer.concat([validLock, Buffer.from('kpack:\n  version: 0.1.0\n')]),
      'list.yaml': Buffer.from('- a\n- b\n'),
    }
    let tried = 0
    for (const [name, bytes] of Object.entries(hostileFiles)) {
      const f = join(work, name)
      await writeFile(f, bytes)
      for (const args of [['render', '-b', f, '-f', join(fixtures, 'render/values.yaml')], ['render', '-b', join(fixtures, 'render/lock-0.17.yaml'), '-f', f]]) {
        const r = await kpi(args)
        tried++
        expect(expectCleanFailure(r), `${name}: ${args.join(' ')}`).toContain(f)
        expect(r.code).toBe(3)
        expectOwnStderr(r)
      }
    }
    inputsTried('fuzz hostile cli', tried)
  })
})
