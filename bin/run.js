#!/usr/bin/env node
// CommonJS (bin/package.json), so that nothing has started libuv's thread pool before the first
// line below: the ES module loader reads an entry file on the pool, which then keeps its size.
'use strict'
const {availableParallelism} = require('node:os')
const {join} = require('node:path')
// libuv's thread pool (file reads and writes) has 4 threads by default; on 2 cores they compete
// with the main thread and a local registry. An archive write of the benchmark platform took
// 5.13-5.34 s with 2 threads, 5.61-6.17 s with 4 and 6.33-6.69 s with 1, measured in
// alternation.
// Read when the pool first starts; a value the user set is kept.
process.env.UV_THREADPOOL_SIZE ??= String(Math.min(4, Math.max(2, availableParallelism())))

// V8's flags, set by bin/code-cache.js before it compiles anything (and again before it makes a
// code cache, which V8 accepts only under the same flags)
const v8Flags = [
  // undici parses HTTP with llhttp compiled to WebAssembly; V8 tiers its one huge parse function up
  // with TurboFan in the background, which holds about 30 MiB of compiler memory at the peak and
  // costs CPU for nothing measurable: body bytes are handed over in spans, not parsed (measured:
  // peak RSS of a relocation with nothing to move 112 -> 80 MiB). Set before undici compiles it.
  '--liftoff-only',
  // V8 doubles the young generation (up to 2 x 16 MiB) while many objects survive a scavenge, as
  // chunks in flight do; it never gives it back. Kept at its first size (the flag is read when the
  // young generation would grow), peak RSS of a registry-to-registry copy went from 104-105 to
  // 92-94 MiB and of an archive write from 135-140 to 118-123, with no time or CPU difference
  // measured side by side.
  '--semi-space-growth-factor=1',
  // V8's heuristics for a small heap (slower heap growth, more eager collection): measured side by
  // side, 3-4 rounds, peak RSS 1-3 MiB lower (behind the WAN profile 93.6-97.1 MiB against
  // 96.8-99.7, registry to registry 90-93 against 92-94), times and CPU unchanged within the noise.
  '--optimize-for-size',
]
// the bundle is minified (scripts/bundle.mjs): a stack trace KPI_DEBUG prints names the sources
if (process.env.KPI_DEBUG) process.setSourceMapsEnabled(true)
// oclif and every command in one file (scripts/bundle.mjs), compiled with V8's code cache
// (bin/code-cache.js); oclif's execute from it, the instance its commands extend (dir: the
// package's root, whose package.json holds the oclif settings, not bin/'s)
const {loadWithCodeCache} = require('./code-cache.js')
loadWithCodeCache(join(__dirname, '..', 'dist', 'kpi.cjs'), {v8Flags}).execute({dir: join(__dirname, '..')})
