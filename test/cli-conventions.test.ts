/**
 * The command line behaves like a native one: every command has an example in its help and takes
 * --json; shell completion comes from oclif's autocomplete plugin and knows kpi's commands and
 * flags; NO_COLOR turns colour off in a terminal, TERM=dumb and pipes get plain lines, and the JSON
 * event stream carries its version (docs/json.md). Run `npm run build` first.
 */
import {execFile} from 'node:child_process'
import {mkdtemp, readFile, readdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {KPI_BIN, kpi} from './helpers/cli.js'

const manifestFile = new URL('../oclif.manifest.json', import.meta.url)
// SGR (colour, bold) escape sequences; cursor movement is not colour
const sgr = /\x1b\[[0-9;]*m/
const anyEscape = /\x1b\[/

let sb: Sandbox
let work: string

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-cli-conventions-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']})
})
afterAll(async () => {
  await sb?.stop()
})

/** Runs kpi in a pseudo-terminal (util-linux script), as a user at a terminal does. */
async function inTerminal(args: string[], env: Record<string, string | undefined>): Promise<string> {
  const {CI: _, NO_COLOR: __, ...base} = process.env
  const cmd = [process.execPath, KPI_BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  const r = await promisify(execFile)('script', ['-qec', cmd, '/dev/null'], {env: {...base, TERM: 'xterm-256color', ...env} as NodeJS.ProcessEnv})
  return r.stdout
}

describe('kpi command line conventions', () => {
  it('every kpi command has an example and takes --json', async () => {
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as {commands: Record<string, {pluginName?: string; examples?: string[]; flags: Record<string, unknown>}>}
    const ours = Object.entries(manifest.commands).filter(([, c]) => c.pluginName === 'kpi')
    expect(ours.length).toBeGreaterThanOrEqual(15)
    const missing = ours.filter(([, c]) => !c.examples?.length).map(([id]) => id)
    expect(missing).toEqual([])
    expect(ours.filter(([, c]) => !('json' in c.flags)).map(([id]) => id)).toEqual([])
  })

  it('shell completion (oclif autocomplete) knows the commands and their flags', async () => {
    const cache = await mkdtemp(join(work, 'xdg-'))
    // oclif's cache directory is $KPI_CACHE_DIR when that is set (a CI that moves the cache), else XDG's
    const r = await kpi(['autocomplete', 'bash', '--refresh-cache'], {XDG_CACHE_HOME: cache, KPI_CACHE_DIR: ''})
    expect(r.code, r.stderr).toBe(0)
    const dir = join(cache, 'kpi', 'autocomplete')
    const files = await readdir(dir, {recursive: true})
    const bash = files.find((f) => f.endsWith('.bash') && f.includes('function'))
    expect(bash, files.join(', ')).toBeDefined()
    const text = await readFile(join(dir, bash!), 'utf8')
    expect(text).toContain('import-kp')
    expect(text).toContain('--lock-format')
    const zsh = await kpi(['autocomplete', 'script', 'zsh'], {XDG_CACHE_HOME: cache})
    expect(zsh.code, zsh.stderr).toBe(0)
    expect(zsh.stdout).toContain('KPI_AC_ZSH_SETUP_PATH')
  })

  it('help: bold in a terminal, no colour with NO_COLOR, none through a pipe', async () => {
    expect(await inTerminal(['relocate', '--help'], {})).toMatch(sgr)
    expect(await inTerminal(['relocate', '--help'], {NO_COLOR: '1'})).not.toMatch(sgr)
    const piped = await kpi(['relocate', '--help'], {})
    expect(piped.stdout).not.toMatch(anyEscape)
  })

  it('progress: no colour with NO_COLOR in a terminal; TERM=dumb gets the plain lines a pipe gets', async () => {
    const args = (f: string) => ['relocate', '-b', sb.bundles.v1!, '--to-tar', join(work, f)]
    const noColor = await inTerminal(args('a.tar'), {...sb.env, NO_COLOR: '1'})
    expect(noColor).toContain('Wrote ')
    expect(noColor).not.toMatch(sgr)
    const dumb = await inTerminal(args('b.tar'), {...sb.env, TERM: 'dumb'})
    expect(dumb).toContain('plan: reading')
    expect(dumb).not.toMatch(anyEscape)
  })

  it('--json: one result document on stdout, and events on stderr as versioned JSON lines', async () => {
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-tar', join(work, 'c.tar'), '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ok: true})
    const lines = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as {v: number; event: {type: string}})
    expect(lines.length).toBeGreaterThan(3)
    expect(lines.every((l) => l.v === 1 && typeof l.event.type === 'string')).toBe(true)
    const failed = await kpi(['bundle', 'lint', join(work, 'nope'), '--json'], {})
    expect(failed.code).toBe(3)
    expect(JSON.parse(failed.stdout)).toMatchObject({ok: false})
  })
})
