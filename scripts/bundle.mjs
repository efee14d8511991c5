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
  external: ['@kubernetes/client-node'],
  // CommonJS dependencies inside an ES module bundle still call require()
  banner: {js: "import {createRequire as __kpiRequire} from 'node:module'; const require = __kpiRequire(import.meta.url);"},
  logLevel: 'warning',
})
