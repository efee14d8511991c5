#!/usr/bin/env node
// undici parses HTTP with llhttp compiled to WebAssembly; V8 tiers its one huge parse function up
// with TurboFan in the background, which holds about 30 MiB of compiler memory at the peak and
// costs CPU for nothing measurable: body bytes are handed over in spans, not parsed (measured:
// peak RSS of a relocation with nothing to move 112 -> 80 MiB). Set before undici compiles it.
import {setFlagsFromString} from 'node:v8'
setFlagsFromString('--liftoff-only')
// V8 doubles the young generation (up to 2 x 16 MiB) while many objects survive a scavenge, as
// chunks in flight do; it never gives it back. Kept at its first size (the flag is read when the
// young generation would grow), peak RSS of a registry-to-registry copy went from 104-105 to
// 92-94 MiB and of an archive write from 135-140 to 118-123, with no time or CPU difference
// measured side by side.
setFlagsFromString('--semi-space-growth-factor=1')
// V8's heuristics for a small heap (slower heap growth, more eager collection): measured side by
// side, 3-4 rounds, peak RSS 1-3 MiB lower (behind the WAN profile 93.6-97.1 MiB against
// 96.8-99.7, registry to registry 90-93 against 92-94), times and CPU unchanged within the noise.
setFlagsFromString('--optimize-for-size')
// oclif from the bundled CLI (scripts/bundle.mjs), the instance its commands extend
const {execute} = await import('../dist/cli/entry.js')
await execute({dir: import.meta.url})
