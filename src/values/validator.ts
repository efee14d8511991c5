/**
 * The values schema's validator. Compiling the schema with ajv costs every install and upgrade
 * 0.1-0.3 CPU-s (ajv's modules and its code generation), before the first request: `npm run build`
 * compiles it once instead (`node dist/values/validator.js`, ajv's standalone code) into
 * dist/values/validator.generated.js, stamped with the schema's digest. A stamp that does not match
 * the schema in use (a build with tsc alone, tests running from src/) compiles it here as before.
 */
import {createHash} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {packageRoot} from '../package-root.js'
import type {Ajv as AjvType, ValidateFunction} from 'ajv'
import {SECRET_KEYWORD, valuesSchema} from './schema.js'

// in dist/values/, beside tsc's output of this module; found from the package root, since the
// bundled CLI runs this code from a chunk in dist/chunks/
const GENERATED = pathToFileURL(join(packageRoot(import.meta.url), 'dist', 'values', 'validator.generated.js'))

const schemaDigest = (): string => createHash('sha256').update(JSON.stringify(valuesSchema)).digest('hex')

async function ajvFor(code?: {source: true; esm: true}): Promise<AjvType> {
  const {Ajv} = await import('ajv')
  const ajv = new Ajv({allErrors: true, verbose: true, strict: true, allowUnionTypes: true, ...(code ? {code} : {})})
  ajv.addKeyword({keyword: SECRET_KEYWORD, schemaType: ['boolean', 'string']})
  return ajv
}

type StandaloneCode = (ajv: AjvType, v: ValidateFunction) => string

let validator: Promise<ValidateFunction> | undefined

export function valuesValidator(): Promise<ValidateFunction> {
  return (validator ??= (async () => {
    const built = (await import(GENERATED.href).catch(() => undefined)) as {validate: ValidateFunction; SCHEMA_DIGEST: string} | undefined
    if (built?.SCHEMA_DIGEST === schemaDigest()) return built.validate
    return compileValidator()
  })())
}

/** The validator ajv compiles now (what runs when the build's is missing or stale). */
export const compileValidator = async (): Promise<ValidateFunction> => (await ajvFor()).compile(valuesSchema)

/** Writes the standalone validator beside this module (the build's last step), or to `file`. */
export async function writeGenerated(file = fileURLToPath(GENERATED)): Promise<string> {
  // a CommonJS module: its function is module.exports, and module.exports.default
  const m = (await import('ajv/dist/standalone/index.js')) as unknown as {default: StandaloneCode & {default?: StandaloneCode}}
  const standalone = m.default.default ?? m.default
  const ajv = await ajvFor({source: true, esm: true})
  // ajv's standalone ESM still require()s its small runtime helpers (ucs2length)
  const code = standalone(ajv, ajv.compile(valuesSchema))
  writeFileSync(file, `import {createRequire} from 'node:module';const require = createRequire(import.meta.url);\nexport const SCHEMA_DIGEST = ${JSON.stringify(schemaDigest())};\n${code.replace(/^"use strict";/, '')}\n`)
  return file
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void writeGenerated()
