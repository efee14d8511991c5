/**
 * The tools a benchmark compares: kpi as built in dist/ (run as a user runs it, `node bin/run.js`)
 * and the peers, found where scripts/tools.sh builds them or where Debian installs them. A peer
 * that is missing is reported as skipped with the reason, never silently left out.
 */
import {execFile} from 'node:child_process'
import {access, constants, readFile, readdir, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {formatError} from '../../src/errors.js'
import {toolPath, type ToolName} from '../../src/sandbox/tools.js'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const KPI_BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
export const SKOPEO_BIN = process.env.KPI_SKOPEO_BIN ?? '/usr/bin/skopeo'

export type PeerName = 'crane' | 'skopeo' | 'imgpkg' | 'kapp'

export interface Tool {
  name: string
  /** absolute path of the binary; undefined when skipped */
  path?: string
  version?: string
  /** why the tool is not measured */
  skipped?: string
}

function output(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(cmd, args, {timeout: 10_000}, (err, stdout, stderr) => resolve(err ? '' : `${stdout}${stderr}`.trim()))
  })
}

/** A peer tool with its version, or the reason it cannot run here. */
export async function findPeer(name: PeerName): Promise<Tool> {
  if (name === 'skopeo') {
    try {
      await access(SKOPEO_BIN, constants.X_OK)
    } catch {
      return {name, skipped: `${SKOPEO_BIN} not found (apt-get install skopeo)`}
    }
    return {name, path: SKOPEO_BIN, version: (await output(SKOPEO_BIN, ['--version'])).replace(/^skopeo version /, '')}
  }
  let path: string
  try {
    path = toolPath(name as ToolName)
  } catch (e) {
    return {name, skipped: formatError(e)}
  }
  const version = name === 'crane' ? await output(path, ['version']) : (await output(path, ['version'])).split('\n')[0]
  return {name, path, version}
}

/** Newest modification time of the .ts files below `dir`. */
async function newestTs(dir: string): Promise<number> {
  let newest = 0
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true})) {
    if (e.isFile() && e.name.endsWith('.ts')) newest = Math.max(newest, (await stat(join(e.parentPath, e.name))).mtimeMs)
  }
  return newest
}

/**
 * kpi as built in dist/; throws with what to do when it is not built. `note` warns when the code
 * a benchmark exercises (`srcDirs` under src/) changed after the build: the numbers would be old.
 */
export async function findKpi(srcDirs: string[] = ['relocate', 'oci', 'archive']): Promise<Tool & {note?: string}> {
  // bin/run.js runs the bundle, which only `npm run build` makes (tsc alone leaves an old one)
  const built = join(REPO_ROOT, 'dist', 'kpi.cjs')
  let builtAt: number
  try {
    builtAt = (await stat(built)).mtimeMs
  } catch {
    throw new Error(`kpi is not built (${built} is missing): run npm run build first`)
  }
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as {version: string}
  let srcAt = 0
  for (const d of srcDirs) srcAt = Math.max(srcAt, await newestTs(join(REPO_ROOT, 'src', d)))
  const note = srcAt > builtAt ? `src/{${srcDirs.join(',')}} changed after dist/ was built: run npm run build to measure the current code` : undefined
  return {name: 'kpi', path: KPI_BIN, version: pkg.version, note}
}
