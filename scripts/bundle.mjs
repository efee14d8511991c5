// `npm run build`, after tsc: bundles the CLI (oclif's entry and every command) with esbuild
// over tsc's per-module output in dist/. Start-up loads a few files instead of ~300 modules
// (oclif alone is ~150 CommonJS files): `kpi relocate` with nothing to move went from
// 0.83-0.94 to 0.63-0.69 CPU-s. Shared code goes into dist/chunks/ (one oclif instance for the
// entry and the commands); each command loads only the chunks it imports. tsc's output stays
// for the programs kpi spawns (dist/cli/sandbox-*.js) and for anything importing dist/ modules.
// undici is loaded at run time by src/oci/undici.ts (createRequire), the Kubernetes client
// stays external (its optional dependencies are resolved at run time).
import {readdirSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {build} from 'esbuild'

const ts = (dir) => readdirSync(dir).flatMap((f) => {
  const p = join(dir, f)
  return statSync(p).isDirectory() ? ts(p) : f.endsWith('.ts') ? [p] : []
})

// chunks are named by content hash: the last build's must not pile up
rmSync('dist/chunks', {recursive: true, force: true})

await build({
  entryPoints: ['src/cli/entry.ts', ...ts('src/commands')],
  outdir: 'dist',
  outbase: 'src',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
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
  // CommonJS dependencies inside an ES module bundle still call require()
  banner: {js: "import {createRequire as __kpiRequire} from 'node:module'; const require = __kpiRequire(import.meta.url);"},
  logLevel: 'warning',
})
