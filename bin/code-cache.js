'use strict'
/**
 * Loads kpi's bundled CLI (dist/kpi.cjs, one CommonJS file: scripts/bundle.mjs) with V8's code
 * cache, as Node 22's module.enableCompileCache would; Node 20 has no such thing for modules.
 * Compiling the bundle and the functions a command runs is most of kpi's start-up: with the
 * cache, a relocation with nothing to move sent its first request at about 160 ms instead of 215
 * and took 0.24 CPU-s instead of 0.30.
 *
 * The cache is per command (`kpi relocate` runs other functions than `kpi render`) and is written
 * when a command that found none (or one V8 refused: another Node, other V8 flags) ends in
 * success, after it ran, so that it holds every function the command compiled, not only the
 * bundle's top level; a run of more than a second that compiled more than its cache held writes
 * it again (an archive written after registry copies). In $KPI_CACHE_DIR/code-cache
 * (~/.cache/kpi/code-cache), named by Node's version and the bundle's content; KPI_CODE_CACHE=off
 * turns it off. A cache that cannot be read or written is only slower, never an error. KPI_DEBUG
 * loads the bundle without it.
 */
const {createHash} = require('node:crypto')
const {closeSync, fstatSync, mkdirSync, openSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync} = require('node:fs')
const Module = require('node:module')
const {homedir} = require('node:os')
const {dirname, join} = require('node:path')
const {setFlagsFromString} = require('node:v8')
const vm = require('node:vm')

// help and version run none of a command's own functions: a cache written after them would be
// one its real runs never improve on (short ones keep the cache they find)
const HELP = new Set(['--help', '-h', '--version', 'help'])
const LONG_RUN_MS = 1000

// glibc frees a block of memory it mapped for a large allocation by unmapping it, and then raises
// its threshold for mapping to that block's size, up to 32 MiB: from then on, allocations up to
// that size come from its heap, which keeps memory they free. Reading the 1.5 MB bundle with
// readFileSync did that, and a registry-to-registry copy held 4-6 MiB more all along (peak RSS
// 90 MiB against 84 with MALLOC_MMAP_THRESHOLD_ fixed, measured side by side). A buffer above
// 32 MiB leaves the threshold as it is; only the pages read into are touched.
const UNTRACKED_BUFFER = 33 << 20

function readWhole(file) {
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    const buf = Buffer.allocUnsafeSlow(Math.max(size, UNTRACKED_BUFFER))
    let n = 0
    for (let r; n < size && (r = readSync(fd, buf, n, size - n, n)) > 0; ) n += r
    return buf.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

/**
 * Where caches go, or undefined: code-cache in kpi's cache directory ($KPI_CACHE_DIR, else
 * $XDG_CACHE_HOME/kpi, else ~/.cache/kpi: src/cache-dir.ts's rule, which this file runs before)
 */
function cacheDir(env) {
  if (env.KPI_CODE_CACHE === 'off') return undefined
  return join(env.KPI_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kpi'), 'code-cache')
}

/** The command's first word (`relocate`, `bundle`), or `other` for flags and anything odd. */
function commandKey(argv) {
  const word = argv[2]
  return word && /^[a-z][a-z-]{0,31}$/.test(word) ? word : 'other'
}

/**
 * Sets `v8Flags`, then compiles and runs `file` as the CommonJS module it is, with the cache for
 * `argv`'s command, and answers its exports. Registered in require's cache, so that oclif's
 * require() of the same file (its explicit command discovery) gets this instance.
 */
function loadWithCodeCache(file, {argv = process.argv, env = process.env, v8Flags = []} = {}) {
  const setFlags = () => v8Flags.forEach((f) => setFlagsFromString(f))
  setFlags()
  // the bundle imports file URLs and package names only, which resolve the same from here
  const importFromBundle = (specifier) => import(specifier)
  // Node's own loader maps the stack traces KPI_DEBUG prints through the bundle's source map
  // (vm.Script does not); the bundle's import() is then a global
  if (env.KPI_DEBUG) {
    globalThis.__kImp = importFromBundle
    return require(file)
  }
  const bytes = readWhole(file)
  // hashed as bytes: a string is first copied into a buffer of its size (the glibc threshold above)
  const build = createHash('sha1').update(bytes).digest('hex').slice(0, 16)
  const source = bytes.toString('utf8')
  const dir = cacheDir(env)
  const stem = `${process.version}-${process.arch}-${commandKey(argv)}-`
  const cacheFile = dir && join(dir, `${stem}${build}.v8`)
  let cachedData
  if (cacheFile) {
    try {
      cachedData = readWhole(cacheFile)
    } catch {}
  }
  // Module.wrap's parameters, and the function the bundle's import() calls go to (scripts/bundle.mjs)
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __kImp) {${source}\n})`, {filename: file, cachedData})
  if (cacheFile && !argv.some((a) => HELP.has(a))) {
    const fresh = !cachedData || script.cachedDataRejected
    const had = fresh ? 0 : cachedData.length
    const started = Date.now()
    process.on('exit', (code) => {
      if (code !== 0) return
      // a cache found, and a long run: it may have run functions the cache lacks (another mode of
      // the command); the cost of asking is nothing beside the run
      if (!fresh && Date.now() - started < LONG_RUN_MS) return
      // V8 stamps a cache with its flags' hash, and a Worker's heap set-up changes
      // --semi-space-growth-factor (oclif starts one for tsx when NODE_ENV is development or test):
      // made after that, the cache was one no later run accepted
      setFlags()
      const data = script.createCachedData()
      if (fresh || data.length > had * 1.05) writeCache(data, dir, cacheFile, stem)
    })
  }
  const m = new Module(file, null)
  m.filename = file
  m.paths = Module._nodeModulePaths(dirname(file))
  require.cache[file] = m
  script.runInThisContext().call(m.exports, m.exports, Module.createRequire(file), m, file, dirname(file), importFromBundle)
  m.loaded = true
  return m.exports
}

const mtimeOf = (file) => {
  try {
    return statSync(file).mtimeMs
  } catch {
    return 0
  }
}

/** Written whole under another name, then renamed: a kpi starting meanwhile reads all or none. */
function writeCache(data, dir, cacheFile, stem) {
  try {
    mkdirSync(dir, {recursive: true})
    const tmp = `${cacheFile}.${process.pid}.tmp`
    writeFileSync(tmp, data)
    renameSync(tmp, cacheFile)
    // the same command's caches for other builds of kpi, but the newest of them: two installs used
    // in turn (a global kpi and a project's, a benchmark's build and its base) would otherwise
    // remove each other's at every run, and every run would compile everything and write it again
    const others = readdirSync(dir)
      .filter((f) => f.startsWith(stem) && f.endsWith('.v8') && join(dir, f) !== cacheFile)
      .map((f) => ({f, at: mtimeOf(join(dir, f))}))
      .sort((a, b) => b.at - a.at)
    for (const {f} of others.slice(1)) rmSync(join(dir, f), {force: true})
  } catch {}
}

module.exports = {loadWithCodeCache, commandKey, cacheDir}
