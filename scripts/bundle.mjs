// `npm run build`, after tsc: bundles the CLI (oclif and every command, src/cli/entry.ts) with
// esbuild into one CommonJS file, dist/kpi.cjs. Start-up loads one file instead of ~300 modules
// (oclif alone is ~150 CommonJS files): `kpi relocate` with nothing to move went from 0.83-0.94 to
// 0.63-0.69 CPU-s. CommonJS, not an ES module, because Node 20 compiles only scripts with V8's code
// cache: bin/run.js compiles this file with the cache a previous run left (bin/code-cache.js),
// which takes the first request of a relocation with nothing to move from about 215 to 160 ms.
// One file, not chunks: a CommonJS bundle cannot be split; what a command imports on demand is
// still evaluated on demand (esbuild wraps it), and V8 compiles a function only when it first runs.
// tsc's output stays for the programs kpi spawns (dist/cli/sandbox-*.js) and for anything
// importing dist/ modules. undici is loaded at run time by src/oci/undici.ts (createRequire), the
// Kubernetes client stays external (an ES module only, imported; its optional dependencies are
// resolved at run time).
import {readFileSync, rmSync, writeFileSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {init, parse} from 'es-module-lexer'
import {build} from 'esbuild'

// oclif sorts its commands at every start with localeCompare, the one call that loads ICU's
// collation data: about 3 MiB of peak RSS (pages of node's binary) and 15-20 ms, for command ids
// that are ASCII (nothing to move, side by side: 67.3-67.6 MiB against 70.5-70.8). Sorted by
// code unit instead; the build fails if oclif's line changes, so that this is looked at again.
const OCLIF_SORT = '.sort((a, b) => a.id.localeCompare(b.id))'
const oclifPlainSort = {
  name: 'oclif-plain-sort',
  setup(b) {
    b.onLoad({filter: /[\\/]@oclif[\\/]core[\\/]lib[\\/]config[\\/]plugin\.js$/}, async ({path}) => {
      const src = await readFile(path, 'utf8')
      if (!src.includes(OCLIF_SORT)) throw new Error(`${path} no longer sorts commands with "${OCLIF_SORT}": see scripts/bundle.mjs`)
      return {contents: src.replace(OCLIF_SORT, '.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))'), loader: 'js'}
    })
  },
}

// what the ES module bundles of earlier builds left
rmSync('dist/chunks', {recursive: true, force: true})

const out = 'dist/kpi.cjs'
await build({
  entryPoints: {kpi: 'src/cli/entry.ts'},
  outdir: 'dist',
  outExtension: {'.js': '.cjs'},
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  // less source for V8 to parse at every start (names kept: errors and classes read the same;
  // KPI_DEBUG's stack traces map back through the source maps, bin/run.js). Side by side, 10
  // rounds: nothing to move 0.40 s against 0.44, the patch 0.96 against 1.01, `kpi version`
  // 138 ms against 143
  minifyWhitespace: true,
  minifySyntax: true,
  external: ['@kubernetes/client-node'],
  // modules find kpi's files from their own URL (src/package-root.ts): here, the bundle's
  define: {'import.meta.url': '__kpiModuleUrl'},
  banner: {js: 'var __kpiModuleUrl=require("node:url").pathToFileURL(__filename).href;'},
  plugins: [oclifPlainSort],
  logLevel: 'warning',
})

// Node 20 loses a script's dynamic import callback when V8 compiles it from a code cache (every
// import() then fails with ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING), so the bundle's import()
// expressions (the Kubernetes client, the values validator, oclif loading an ES module plugin)
// call a function bin/code-cache.js hands in instead, whose own import() Node compiled. Found by
// a lexer, not a pattern: "import(" also appears in strings. Same length, so the source map holds.
await init
let code = readFileSync(out, 'utf8')
if (code.includes('__kImp')) throw new Error(`${out} already names __kImp, the name bin/code-cache.js gives its import`)
const [imports] = parse(code)
const dynamic = imports.filter((i) => i.d > -1).sort((a, b) => b.ss - a.ss)
for (const {ss} of dynamic) {
  if (code.slice(ss, ss + 6) !== 'import') throw new Error(`${out}: no import() at ${ss}`)
  code = `${code.slice(0, ss)}__kImp${code.slice(ss + 6)}`
}
writeFileSync(out, code)
