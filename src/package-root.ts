/** Where kpi's own files are (tools/versions.env, bundles/sample, bin/run.js), from any of its modules. */
import {existsSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

/**
 * The directory holding kpi's package.json and bin/run.js, from the URL of any of its modules:
 * src/, dist/, or a chunk of the bundled CLI (dist/chunks/), which sits at another depth than the
 * module it was built from, so `../..` from `import.meta.url` would not do.
 */
export function packageRoot(here: string): string {
  let dir = dirname(fileURLToPath(here))
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'run.js'))) return dir
    const up = dirname(dir)
    if (up === dir) throw new Error(`no kpi package above ${fileURLToPath(here)}`)
    dir = up
  }
}
