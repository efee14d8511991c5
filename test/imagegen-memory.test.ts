import {mkdtemp} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {expect, it} from 'vitest'
import {writeLayer} from '../src/imagegen/index.js'

// Its own file, so the worker measuring RSS runs nothing else at the same time.
it('streams a 64 MiB layer with RSS growth well below 64 MiB', async () => {
  const layout = await mkdtemp(join(tmpdir(), 'kpi-imagegen-mem-'))
  await writeLayer(layout, {seed: 'warm-up', size: 2 << 20}, {cacheDir: false})
  const base = process.memoryUsage().rss
  let peak = base
  const sample = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 2)
  try {
    const l = await writeLayer(layout, {seed: 'sixty-four', size: 64 << 20}, {cacheDir: false})
    expect(l.size).toBeGreaterThan(64 << 20)
  } finally {
    clearInterval(sample)
  }
  peak = Math.max(peak, process.memoryUsage().rss)
  expect((peak - base) / 2 ** 20).toBeLessThan(16)
})
