/**
 * kpi's cache directory is one rule said in three places: src/cache-dir.ts (the tools' and the
 * generated layers' cache), scripts/tools.sh (which builds the tools into it) and bin/code-cache.js
 * (which runs before kpi's modules are loaded). They must agree, or a tool built by the script is
 * not found by kpi.
 */
import {execFile} from 'node:child_process'
import {createRequire} from 'node:module'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'
import {kpiCacheDir} from '../src/cache-dir.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const {cacheDir} = createRequire(import.meta.url)('../bin/code-cache.js') as {cacheDir: (env: NodeJS.ProcessEnv) => string | undefined}

const cases: Array<{name: string; env: NodeJS.ProcessEnv; want: string}> = [
  {name: 'KPI_CACHE_DIR first', env: {HOME: '/h', KPI_CACHE_DIR: '/k', XDG_CACHE_HOME: '/x'}, want: '/k'},
  {name: 'then $XDG_CACHE_HOME/kpi', env: {HOME: '/h', XDG_CACHE_HOME: '/x'}, want: '/x/kpi'},
  {name: 'an empty KPI_CACHE_DIR as unset', env: {HOME: '/h', KPI_CACHE_DIR: '', XDG_CACHE_HOME: '/x'}, want: '/x/kpi'},
  {name: 'else ~/.cache/kpi', env: {HOME: '/h'}, want: '/h/.cache/kpi'},
  {name: 'an empty XDG_CACHE_HOME as unset', env: {HOME: '/h', XDG_CACHE_HOME: ''}, want: '/h/.cache/kpi'},
]

describe("kpi's cache directory", () => {
  for (const c of cases) {
    it(`${c.name}: src/cache-dir.ts, scripts/tools.sh and bin/code-cache.js agree`, async () => {
      // homedir() reads HOME first on Linux, as the shell does
      const saved = process.env.HOME
      process.env.HOME = c.env.HOME
      try {
        expect(kpiCacheDir(c.env)).toBe(c.want)
        expect(cacheDir(c.env)).toBe(join(c.want, 'code-cache'))
      } finally {
        process.env.HOME = saved
      }
      const {stdout} = await promisify(execFile)('bash', [join(root, 'scripts', 'tools.sh'), 'where'], {env: {PATH: process.env.PATH, ...c.env}})
      expect(stdout.trim()).toBe(c.want)
    })
  }
})
