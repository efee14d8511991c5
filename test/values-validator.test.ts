/**
 * The values validator the build writes (ajv standalone, src/values/validator.ts) judges exactly
 * as the one ajv compiles at run time: same verdicts, same errors, on valid and broken values.
 */
import {mkdtemp, rm, symlink} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {afterAll, describe, expect, it} from 'vitest'
import type {ValidateFunction} from 'ajv'
import {compileValidator, writeGenerated} from '../src/values/validator.js'

let dir = ''
afterAll(async () => {
  if (dir) await rm(dir, {recursive: true, force: true})
})

const cases: unknown[] = [
  {registry: {server: 'registry.example', repository: 'build-service', username: 'u', password: 'p'}, teams: [{name: 'payments'}]},
  {registry: {server: 'registry.example', repository: 'build-service'}, kpack: {webhook: {failurePolicy: 'Ignore'}, controller: {resources: {requests: {cpu: '64'}}}}},
  {},
  {registry: {server: 42, repository: ['x']}, teams: 'payments', unknownField: true},
  {registry: {server: 'registry.example', repository: 'build-service', usrname: 'u'}, teams: [{name: 'Not A Name!'}], kpack: {webhook: {failurePolicy: 'Sometimes'}}},
  {registry: {server: 'r.example', repository: 'b'}, caCerts: ['not a certificate', 7], proxy: {httpProxy: 5}},
]

describe('values validator', () => {
  it('the generated validator gives the verdicts and errors of the compiled one', async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpi-validator-'))
    // the generated code requires ajv's small runtime helpers, as it does from dist/
    await symlink(fileURLToPath(new URL('../node_modules', import.meta.url)), join(dir, 'node_modules'))
    const file = await writeGenerated(join(dir, 'validator.generated.js'))
    const generated = (await import(pathToFileURL(file).href)) as {validate: ValidateFunction; SCHEMA_DIGEST: string}
    expect(generated.SCHEMA_DIGEST).toMatch(/^[0-9a-f]{64}$/)
    const compiled = await compileValidator()
    const verdicts: boolean[] = []
    for (const c of cases) {
      const ok = compiled(c)
      verdicts.push(ok)
      expect(generated.validate(c), JSON.stringify(c)).toBe(ok)
      const strip = (es: ValidateFunction['errors']) => (es ?? []).map((e) => ({path: e.instancePath, keyword: e.keyword, params: e.params, message: e.message}))
      expect(strip(generated.validate.errors)).toEqual(strip(compiled.errors))
    }
    // the cases cover both verdicts
    expect(verdicts).toContain(true)
    expect(verdicts).toContain(false)
  })
})
