/**
 * How to run one of kpi's own modules as a separate Node program (the pod launcher, the sandbox
 * supervisor): from dist/ as plain JavaScript, or from src/ under the tests through tsx.
 */
import {createRequire} from 'node:module'
import {fileURLToPath, pathToFileURL} from 'node:url'

/** Node arguments that run the module at path `name` relative to the module at `here` (e.g. `../cli/sandbox-nsproc`). */
export function nodeScriptArgs(here: string, name: string): string[] {
  if (fileURLToPath(here).endsWith('.ts')) {
    const tsx = createRequire(here).resolve('tsx')
    return ['--import', pathToFileURL(tsx).href, fileURLToPath(new URL(`./${name}.ts`, here))]
  }
  return [fileURLToPath(new URL(`./${name}.js`, here))]
}
