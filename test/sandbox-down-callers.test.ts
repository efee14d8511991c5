/**
 * `kpi sandbox down` sweeps up the processes a dead sandbox left: those whose command line names its
 * directory. The command that ran kpi names the directory too (`sudo kpi sandbox down --dir DIR`,
 * `timeout`, `npx`, a script): those are not the sandbox's, and are never killed. No root needed:
 * no sandbox is started.
 */
import {spawn} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {KPI_BIN} from './helpers/cli.js'

const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs) await rm(d, {recursive: true, force: true})
})

function run(cmd: string, args: string[]): Promise<{code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string}> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {env: {...process.env, NO_COLOR: '1', CI: 'true'}, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code, signal) => resolve({code, signal, stdout, stderr}))
  })
}

describe('kpi sandbox down', () => {
  it('kills a leftover that names the directory, not the wrapper that ran kpi with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-down-'))
    dirs.push(dir)
    // what a supervisor killed outright leaves: a process whose command line names a path under dir
    const leftover = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', join(dir, 'run', 'leftover')], {stdio: 'ignore'})
    const leftoverGone = new Promise<NodeJS.Signals | null>((resolve) => leftover.on('exit', (_code, signal) => resolve(signal)))
    try {
      // a wrapper whose own arguments name dir, as sudo's do in `sudo kpi sandbox down --dir DIR`
      const r = await run('sh', ['-c', '"$0" "$1" sandbox down --dir "$2"; echo "kpi exited $?"', process.execPath, KPI_BIN, dir])
      expect(r.signal, r.stderr).toBeNull()
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toContain(`no sandbox running in ${dir} (1 leftover processes killed)`)
      expect(r.stdout).toContain('kpi exited 0')
      expect(await leftoverGone).toBe('SIGKILL')
    } finally {
      leftover.kill('SIGKILL')
    }
  })
})
