/**
 * Archive faults through the CLI: a truncated archive, a missing part of a split archive, a part
 * from another archive, members with `..`, absolute paths, symbolic and hard links, and a blob
 * whose bytes do not match its digest; then fuzzed archives in-process. Each import goes to
 * go-containerregistry's registry (which accepts a manifest whose blobs are missing, so a push
 * before the blobs would show): kpi fails with one line, nothing is written outside its
 * destination, no manifest there lacks a blob, and the import of a good copy then completes.
 */
import {copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, unlink, writeFile} from 'node:fs/promises'
import {existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import fc from 'fast-check'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openArchive} from '../../src/archive/reader.js'
import {blobMember} from '../../src/archive/toc.js'
import {verifyArchive} from '../../src/archive/verify.js'
import {bundleImages, loadBundle} from '../../src/bundle/index.js'
import {formatError, isKpiError} from '../../src/errors.js'
import {createRegistryClient, parseReference, type OciClient} from '../../src/oci/index.js'
import {startGgcrRegistry, type GgcrRegistry} from '../../src/sandbox/ggcr-registry.js'
import {startSandbox, type Sandbox} from '../../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi} from '../helpers/cli.js'
import {assertComplete} from '../helpers/images.js'
import {repackTar} from '../helpers/tar.js'
import {budget, faultInjected, inputsTried} from './ledger.js'
import {sourceManifests, walkDestination} from './walk.js'

let work: string
let sb: Sandbox
let dst: GgcrRegistry
let direct: OciClient
let whole: string
let partsA: string[]
let partsB: string[]
let candidates: Set<string>
let env: Record<string, string>
let n = 0
const SPLIT = '512KiB'

const parts = async (base: string): Promise<string[]> => {
  const dir = join(base, '..')
  const name = base.slice(dir.length + 1)
  return (await readdir(dir)).filter((f) => f.startsWith(`${name}.part`)).sort().map((f) => join(dir, f))
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-archive-faults-'))
  sb = await startSandbox({runDir: join(work, 'servers', 'sandbox'), samples: ['v1', 'v2']})
  dst = await startGgcrRegistry({runDir: join(work, 'servers', 'dst')})
  env = {...sb.env, KPI_PLAIN_HTTP: [sb.public.host, dst.host].join(',')}
  direct = createRegistryClient({plainHttp: () => true, retries: 0})
  candidates = await sourceManifests(direct, sb.bundle.v1!)
  whole = join(work, 'v1.tar')
  for (const args of [
    ['-b', sb.bundles.v1!, '--to-tar', whole],
    ['-b', sb.bundles.v1!, '--to-tar', join(work, 'split', 'a.tar'), '--split', SPLIT],
    ['-b', sb.bundles.v2!, '--to-tar', join(work, 'split', 'b.tar'), '--split', SPLIT],
  ]) {
    await mkdir(join(work, 'split'), {recursive: true})
    const r = await kpi(['relocate', ...args], env)
    expect(r.code, r.stderr).toBe(0)
  }
  partsA = await parts(join(work, 'split', 'a.tar'))
  partsB = await parts(join(work, 'split', 'b.tar'))
  expect(partsA.length).toBeGreaterThanOrEqual(3)
})

afterAll(async () => {
  await direct?.close()
  await dst?.stop()
  await sb?.stop()
})

/** Files below `dir`, for checking that a run wrote nothing there. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true})) out.push(join(e.parentPath, e.name))
  return out.sort()
}

/**
 * Imports the damaged archive (its first file `bad`) and checks the shared outcome: one clean
 * line matching `says`, `tar verify` refuses it too, nothing new outside the lock's directory, no
 * manifest at the destination without its blobs, and the good archive then imports completely.
 */
async function survive(name: string, bad: string, says: RegExp, into: GgcrRegistry = dst): Promise<void> {
  const dst = into
  const ledger = faultInjected(`archive ${name}`)
  const prefix = `a${n++}-${name}`
  const jail = await mkdtemp(join(work, 'jail-'))
  const cwd = join(jail, 'cwd')
  await mkdir(cwd)
  // the registries keep their data under work/servers; everything else there is the test's files
  const files = async () => (await tree(work)).filter((f) => !f.startsWith(join(work, 'servers')))
  const before = await files()
  const lock = join(cwd, 'lock.yaml')
  const r = await kpi(['relocate', '--from-tar', bad, '--to-repo', `${dst.host}/${prefix}`, '--lock-output', lock], env, {cwd})
  expect(expectCleanFailure(r)).toMatch(says)
  const v = await kpi(['tar', 'verify', bad], env, {cwd})
  expect(expectCleanFailure(v)).toMatch(/archive/)
  // nothing written: no lock, nothing new anywhere under the work directory (the jail and cwd aside)
  expect(existsSync(lock)).toBe(false)
  expect((await files()).filter((f) => !before.includes(f) && !f.startsWith(jail))).toEqual([])
  expect(await readdir(cwd)).toEqual([])
  expect(existsSync('/tmp/kpi-escaped')).toBe(false)

  const walk = await walkDestination(direct, dst.host, prefix, candidates)
  expect(walk.problems, walk.problems.join('\n')).toEqual([])

  const good = await kpi(['relocate', '--from-tar', whole, '--to-repo', `${dst.host}/${prefix}`, '--lock-output', lock], env, {cwd})
  expect(good.code, good.stderr).toBe(0)
  for (const img of bundleImages((await loadBundle(lock)).bundle)) {
    const ref = parseReference(img.ref)
    await assertComplete(direct, {registry: dst.host, repository: ref.repository}, ref.digest!)
  }
  await rm(jail, {recursive: true, force: true})
  ledger.survived()
}

describe('archive faults', () => {
  it('truncated: in the middle of a blob, inside the last member, and without the end-of-archive marker', async () => {
    const size = (await stat(whole)).size
    for (const [label, at] of [['mid', Math.floor(size / 2)], ['last-member', size - 2048 - 100], ['no-end', size - 1024]] as const) {
      const file = join(work, `truncated-${label}.tar`)
      await copyFile(whole, file)
      await truncate(file, at)
      await survive(`truncated-${label}`, file, /truncated|end-of-archive|damaged|ends/i)
    }
  })

  it('a split archive with a part missing', async () => {
    const dir = join(work, 'missing-part')
    await mkdir(dir)
    for (const p of partsA) await copyFile(p, join(dir, p.slice(p.lastIndexOf('/') + 1)))
    await unlink(join(dir, partsA[1]!.slice(partsA[1]!.lastIndexOf('/') + 1)))
    await survive('missing-part', join(dir, partsA[0]!.slice(partsA[0]!.lastIndexOf('/') + 1)), /part/)
  })

  it('a split archive with a part from another archive', async () => {
    const dir = join(work, 'foreign-part')
    await mkdir(dir)
    for (const p of partsA) await copyFile(p, join(dir, p.slice(p.lastIndexOf('/') + 1)))
    await copyFile(partsB[1]!, join(dir, partsA[1]!.slice(partsA[1]!.lastIndexOf('/') + 1)))
    await survive('foreign-part', join(dir, partsA[0]!.slice(partsA[0]!.lastIndexOf('/') + 1)), /archive/)
  })

  it('members with .., an absolute path, a symbolic link and a hard link: refused, nothing written outside', async () => {
    const hostile = [
      ['dotdot', {name: '../../../../../../tmp/kpi-escaped', size: 4, type: 'file' as const}, /'\.\.'/],
      ['absolute', {name: '/tmp/kpi-escaped', size: 4, type: 'file' as const}, /absolute/],
      ['symlink', {name: 'blobs/sha256/escape', type: 'symlink' as const, linkname: '/tmp/kpi-escaped'}, /symbolic link/],
      ['hardlink', {name: 'escape', type: 'link' as const, linkname: '../../tmp/kpi-escaped'}, /hard link/],
    ] as const
    for (const [label, header, says] of hostile) {
      const file = await repackTar(whole, join(work, `hostile-${label}.tar`), (es) =>
        es.splice(2, 0, {header: {...header}, data: header.type === 'file' ? Buffer.from('evil') : Buffer.alloc(0)}))
      await survive(`hostile-${label}`, file, says)
    }
  })

  it('a blob whose bytes do not match its digest', async () => {
    const a = await openArchive(whole)
    const biggest = [...a.toc.blobs].sort((x, y) => y.size - x.size)[0]!
    const member = a.members.get(blobMember(biggest.digest))!
    await a.close()
    const file = join(work, 'lying-blob.tar')
    await copyFile(whole, file)
    const bytes = await readFile(file)
    bytes[member.offset + Math.floor(member.size / 2)]! ^= 0xff
    await writeFile(file, bytes)
    // a registry of its own: go-containerregistry's registry shares blobs between repositories,
    // and one that already has the blob would never make kpi read the lying bytes
    const fresh = await startGgcrRegistry({runDir: join(work, 'servers', 'dst-lying'), name: 'lying'})
    env.KPI_PLAIN_HTTP += `,${fresh.host}`
    try {
      await survive('lying-blob', file, new RegExp(`${biggest.digest.slice(0, 20)}|digest`), fresh)
    } finally {
      await fresh.stop()
    }
  })
})

describe('fuzzed archives, in-process', () => {
  it('every damaged copy is refused with a KpiError or reported damaged by verify; never another exception', async () => {
    const good = await readFile(whole)
    const a = await openArchive(whole)
    // where the structure is: member headers, the toc, index.json and the manifests
    const spots = [...a.members.values()].flatMap((m) => [m.start, m.offset, m.offset + Math.max(0, m.size - 1)])
    // an archive cut before the end of its last member's content has lost bytes some member needs
    const contentEnd = Math.max(...[...a.members.values()].map((m) => m.offset + m.size))
    await a.close()
    const file = join(work, 'fuzzed.tar')
    /** Whether `bytes` as an archive verify whole; a refusal must be a KpiError naming the file. */
    const verifiesWhole = async (bytes: Buffer): Promise<boolean> => {
      await writeFile(file, bytes)
      try {
        return (await verifyArchive(file)).ok
      } catch (e) {
        if (!isKpiError(e)) throw new Error(`not a KpiError: ${(e as Error)?.stack ?? String(e)}`)
        expect(formatError(e)).toContain(file)
        return false
      }
    }
    const edit = fc.oneof(
      fc.record({spot: fc.constantFrom(...spots), delta: fc.integer({min: -600, max: 600}), byte: fc.integer({min: 0, max: 255})}).map(({spot, delta, byte}) => (b: Buffer) => {
        const out = Buffer.from(b)
        const at = Math.min(out.length - 1, Math.max(0, spot + delta))
        out[at] = out[at] === byte ? byte ^ 1 : byte
        return out
      }),
      fc.nat({max: good.length - 1}).map((cut) => Object.assign((b: Buffer) => b.subarray(0, cut), {cut})),
      fc.record({at: fc.nat({max: good.length - 1}), len: fc.integer({min: 1, max: 4096})}).map(({at, len}) => (b: Buffer) => Buffer.concat([b.subarray(0, at), b.subarray(at + len)])),
    )
    for (const cut of [contentEnd - 1, Math.floor(contentEnd / 2), spots[0]! + 100]) expect(await verifiesWhole(good.subarray(0, cut)), `the archive cut at byte ${cut} verified whole`).toBe(false)
    let tried = 0
    let refused = 0
    await fc.assert(fc.asyncProperty(fc.array(edit, {minLength: 1, maxLength: 3}), async (edits) => {
      const bytes = edits.reduce((b, e) => e(b), good)
      if (bytes.equals(good)) return
      tried++
      const intact = await verifiesWhole(bytes)
      // an edit of padding or of bytes nobody reads may leave the archive whole: then every digest
      // matched; never an archive cut before its last member's content ends
      const cut = edits.length === 1 ? (edits[0] as {cut?: number}).cut : undefined
      if (cut !== undefined && cut < contentEnd) expect(intact, `the archive cut at byte ${cut} verified whole`).toBe(false)
      if (!intact) refused++
    }), {numRuns: budget(80), endOnFailure: true})
    inputsTried('fuzz archive', tried)
    expect(refused / Math.max(tried, 1)).toBeGreaterThan(0.5)
  })
})
