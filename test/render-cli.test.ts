import {execFile} from 'node:child_process'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {parseAllDocuments} from 'yaml'
import {CANARY, lock13File, lock17File, valuesFile} from './fixtures/render/helpers.js'

const run = promisify(execFile)
const root = join(import.meta.dirname, '..')
let dir = ''

interface Result {
  code: number
  stdout: string
  stderr: string
}

const kpi = (...args: string[]): Promise<Result> =>
  run(process.execPath, [join(root, 'bin/run.js'), ...args], {cwd: root, maxBuffer: 64 << 20}).then(
    (r) => ({code: 0, stdout: r.stdout, stderr: r.stderr}),
    (e: {code: number; stdout: string; stderr: string}) => ({code: e.code, stdout: e.stdout, stderr: e.stderr}),
  )

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-render-cli-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('kpi render', () => {
  it('prints the objects as YAML on stdout and the warnings on stderr, the same bytes every time', async () => {
    const a = await kpi('render', '-b', lock13File, '-f', valuesFile)
    expect(a.code).toBe(0)
    expect(a.stderr).toMatch(/^Warning: .*no certInjection images/)
    const docs = parseAllDocuments(a.stdout) as unknown as Array<{toJS(): {kind: string; metadata: {name: string}}}>
    expect(docs.length).toBeGreaterThan(40)
    expect(docs[0]!.toJS()).toMatchObject({kind: 'Namespace', metadata: {name: 'kpack'}})
    expect(a.stdout).not.toContain(CANARY)
    const b = await kpi('render', '-b', lock13File, '-f', valuesFile)
    expect(b.stdout).toBe(a.stdout)
  })

  it('--json prints {ok, objects, warnings}', async () => {
    const r = await kpi('render', '-b', lock17File, '-f', valuesFile, '--json')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as {ok: boolean; objects: Array<{stage: string; object: {kind: string}}>; warnings: string[]}
    expect(out.ok).toBe(true)
    // the fixture's teams share the platform's registry account
    expect(out.warnings).toEqual([expect.stringMatching(/^teams payments, web get the platform's registry account/)])
    expect(out.objects.find((o) => o.object.kind === 'ClusterLifecycle')?.stage).toBe('lifecycle')
    expect(r.stdout).not.toContain(CANARY)
  })

  it('bad values: one line per problem naming file, line and field, exit code 3, no stack trace', async () => {
    const text = (await readFile(valuesFile, 'utf8')).replace('  username:', '  usrname:')
    const bad = join(dir, 'values.yaml')
    await writeFile(bad, text)
    const r = await kpi('render', '-b', lock13File, '-f', bad)
    expect(r.code).toBe(3)
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain(`${bad}:6:3: registry.usrname: unknown field (did you mean username?)`)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.stderr).not.toContain(CANARY)
    const j = await kpi('render', '-b', lock13File, '-f', bad, '--json')
    expect(JSON.parse(j.stdout)).toMatchObject({ok: false, error: {kind: 'input'}})
  })

  it('a lock with an image outside the registry is refused, naming it', async () => {
    const outside = 'ghcr.io/elsewhere/controller@sha256:' + 'c'.repeat(64)
    const text = (await readFile(lock13File, 'utf8')).replace(/controller: \S+/, `controller: ${outside}`)
    const lock = join(dir, 'lock.yaml')
    await writeFile(lock, text)
    const r = await kpi('render', '-b', lock, '-f', valuesFile)
    expect(r.code).toBe(3)
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain(`${outside} (not under registry.corp.example:5000/platform/kpack) at Deployment kpack/kpack-controller: spec.template.spec.containers[name=controller].image`)
  })
})
