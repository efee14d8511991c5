/**
 * How the CLI starts: src/cli/entry.ts lists every command under the id oclif would give its
 * file in src/commands/, and bin/run.js compiles the bundle (dist/kpi.cjs) with V8's code cache
 * (bin/code-cache.js): written after a successful run that found none, used by the next, replaced
 * when V8 refuses it, kept beside the newest cache of another build, never written after help or a
 * failure, and off with KPI_CODE_CACHE=off.
 * Run `npm run build` first.
 */
import {existsSync} from 'node:fs'
import {mkdir, mkdtemp, readdir, readFile, stat, utimes, writeFile} from 'node:fs/promises'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {join, relative, sep} from 'node:path'
import {fileURLToPath} from 'node:url'
import {beforeAll, describe, expect, it} from 'vitest'
import {COMMANDS} from '../src/cli/entry.js'
import {kpi} from './helpers/cli.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const bundle = join(root, 'dist', 'kpi.cjs')
const {commandKey} = createRequire(import.meta.url)('../bin/code-cache.js') as {commandKey: (argv: string[]) => string}

async function commandFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true})) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await commandFiles(p)))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

describe('the command list', () => {
  it('holds every file in src/commands under its oclif id, and nothing else', async () => {
    const dir = join(root, 'src', 'commands')
    const ids = (await commandFiles(dir)).map((f) => relative(dir, f).replace(/\.ts$/, '').split(sep).join(':')).sort()
    // the ids only: a command's getter require()s its module, which only the bundle can
    expect(Object.keys(COMMANDS).sort()).toEqual(ids)
  })

  it('gives each id its own command class in the built bundle', () => {
    expect(existsSync(bundle), 'npm run build first').toBe(true)
    const built = createRequire(import.meta.url)(bundle) as {COMMANDS: Record<string, {prototype: {run?: unknown}; description?: string}>}
    const classes = new Set()
    for (const id of Object.keys(COMMANDS)) {
      const cmd = built.COMMANDS[id]
      expect(typeof cmd, id).toBe('function')
      expect(typeof cmd!.prototype.run, id).toBe('function')
      expect(cmd!.description, id).toBeTruthy()
      classes.add(cmd)
    }
    expect(classes.size).toBe(Object.keys(COMMANDS).length)
  })

  it('is what the built CLI offers', async () => {
    const manifest = JSON.parse(await readFile(join(root, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>}
    expect(Object.keys(manifest.commands).sort()).toEqual(Object.keys(COMMANDS).sort())
  })
})

describe('the code cache', () => {
  let home: string
  const cacheDir = () => join(home, 'code-cache')
  const env = () => ({KPI_CACHE_DIR: home})
  const files = async () => (existsSync(cacheDir()) ? (await readdir(cacheDir())).sort() : [])

  beforeAll(async () => {
    expect(existsSync(bundle), 'npm run build first').toBe(true)
    home = await mkdtemp(join(tmpdir(), 'kpi-code-cache-'))
  })

  it('is written by a successful run, per command, and used by the next', async () => {
    const first = await kpi(['version'], env())
    expect(first.code).toBe(0)
    const written = await files()
    expect(written).toHaveLength(1)
    expect(written[0]).toMatch(new RegExp(`^${process.version}-${process.arch}-version-[0-9a-f]{16}\\.v8$`))
    const before = await stat(join(cacheDir(), written[0]!))

    const second = await kpi(['version'], env())
    expect(second.code).toBe(0)
    expect(second.stdout).toBe(first.stdout)
    // used, not written again
    expect((await stat(join(cacheDir(), written[0]!))).mtimeMs).toBe(before.mtimeMs)
    expect(await files()).toEqual(written)
  })

  it('is replaced when V8 refuses it, and the run does not notice', async () => {
    await kpi(['version'], env())
    const [name] = (await files()).filter((f) => f.includes('-version-'))
    const file = join(cacheDir(), name!)
    const good = await readFile(file)
    const junk = Buffer.alloc(good.length, 7)
    await writeFile(file, junk)
    const r = await kpi(['version'], env())
    expect(r).toMatchObject({code: 0, stderr: ''})
    expect(r.stdout).toMatch(/^kpi \d/)
    const replaced = await readFile(file)
    expect(replaced.equals(junk)).toBe(false)
    // and the new one is used: not written again
    const at = (await stat(file)).mtimeMs
    expect((await kpi(['version'], env())).code).toBe(0)
    expect((await stat(file)).mtimeMs).toBe(at)
  })

  it("keeps the newest cache of another build of kpi beside its own, and removes older ones", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-code-cache-builds-'))
    const cc = join(dir, 'code-cache')
    await mkdir(cc)
    // two other builds' caches of the same command (one of another command), the older an hour older
    const stem = `${process.version}-${process.arch}-version-`
    const [older, newer, render] = [`${stem}000000000000000a.v8`, `${stem}000000000000000b.v8`, `${process.version}-${process.arch}-render-000000000000000a.v8`]
    for (const f of [older, newer, render]) await writeFile(join(cc, f), 'x')
    const hourAgo = new Date(Date.now() - 3600_000)
    await utimes(join(cc, older), hourAgo, hourAgo)
    expect((await kpi(['version'], {KPI_CACHE_DIR: dir})).code).toBe(0)
    const left = (await readdir(cc)).sort()
    expect(left).toHaveLength(3)
    expect(left).toContain(newer)
    expect(left).toContain(render)
    expect(left).not.toContain(older)
    // this build's, written: two builds used in turn each keep theirs
    const own = left.find((f) => f !== newer && f !== render)!
    expect(own).toMatch(new RegExp(`^${stem}[0-9a-f]{16}\\.v8$`))
  })

  it("is made under kpi's V8 flags even when a Worker has run (NODE_ENV=test starts one)", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-code-cache-worker-'))
    const e = {KPI_CACHE_DIR: dir, NODE_ENV: 'test'}
    expect((await kpi(['version'], e)).code).toBe(0)
    const [name] = await readdir(join(dir, 'code-cache'))
    const at = (await stat(join(dir, 'code-cache', name!))).mtimeMs
    expect((await kpi(['version'], e)).code).toBe(0)
    expect((await kpi(['version'], {KPI_CACHE_DIR: dir, NODE_ENV: 'production'})).code).toBe(0)
    expect((await stat(join(dir, 'code-cache', name!))).mtimeMs).toBe(at)
  })

  it("leaves import() working in code compiled from it (Node 20 drops a cached script's import callback)", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-code-cache-import-'))
    // oclif loads the autocomplete plugin, an ES module, with import()
    for (let i = 0; i < 2; i++) {
      const r = await kpi(['autocomplete', 'script', 'zsh'], {KPI_CACHE_DIR: dir})
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toContain('KPI_AC_ZSH_SETUP_PATH')
    }
    const [name] = await readdir(join(dir, 'code-cache'))
    expect(name).toContain('-autocomplete-')
  })

  it("is left out by KPI_DEBUG, whose stack traces name kpi's sources", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-code-cache-debug-'))
    const r = await kpi(['render', '-b', join(dir, 'missing'), '--values', join(dir, 'values.yaml')], {KPI_CACHE_DIR: dir, KPI_DEBUG: '1'})
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/src\/bundle\/load\.ts:\d+/)
    expect(existsSync(join(dir, 'code-cache'))).toBe(false)
  })

  it('is not written after help, a failure, or with KPI_CODE_CACHE=off', async () => {
    expect((await kpi(['render', '--help'], env())).code).toBe(0)
    expect((await kpi(['render', '--no-such-flag'], env())).code).not.toBe(0)
    expect((await files()).filter((f) => f.includes('-render-'))).toEqual([])
    const off = await mkdtemp(join(tmpdir(), 'kpi-code-cache-off-'))
    expect((await kpi(['version'], {KPI_CACHE_DIR: off, KPI_CODE_CACHE: 'off'})).code).toBe(0)
    expect(existsSync(join(off, 'code-cache'))).toBe(false)
  })

  it('goes under $XDG_CACHE_HOME/kpi when KPI_CACHE_DIR is unset or empty', async () => {
    const xdg = await mkdtemp(join(tmpdir(), 'kpi-code-cache-xdg-'))
    const r = await kpi(['version'], {KPI_CACHE_DIR: '', XDG_CACHE_HOME: xdg})
    expect(r.code).toBe(0)
    expect((await readdir(join(xdg, 'kpi', 'code-cache'))).length).toBe(1)
  })

  it('keys flags and odd words as one "other" cache', () => {
    expect(commandKey(['node', 'kpi', 'relocate', '-b', 'x'])).toBe('relocate')
    expect(commandKey(['node', 'kpi', '--version'])).toBe('other')
    expect(commandKey(['node', 'kpi', '../../etc'])).toBe('other')
    expect(commandKey(['node', 'kpi'])).toBe('other')
  })
})
