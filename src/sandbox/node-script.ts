/**
 * How to run one of kpi's own modules as a separate Node program (the pod launcher, the sandbox
 * supervisor): from dist/ as plain JavaScript, or from src/ under the tests through tsx.
 */
import {createRequire} from 'node:module'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {packageRoot} from '../package-root.js'

/** Node arguments that run kpi's module `name` (e.g. `cli/sandbox-nsproc`), from src/ or dist/ as `here` is. */
export function nodeScriptArgs(here: string, name: string): string[] {
  const root = packageRoot(here)
  if (fileURLToPath(here).endsWith('.ts')) {
    const tsx = createRequire(here).resolve('tsx')
    return ['--import', pathToFileURL(tsx).href, join(root, 'src', `${name}.ts`)]
  }
  return [join(root, 'dist', `${name}.js`)]
}
