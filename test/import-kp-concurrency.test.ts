/**
 * `kpi bundle import-kp --concurrency N` bounds the tag lookups the import makes, as it does for
 * `kpi bundle lock`: a registry client that counts the lookups in flight, and answers none.
 */
import {mkdtemp, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {stringify} from 'yaml'
import {importKpDescriptor} from '../src/bundle/kp/import.js'
import {loadBundle} from '../src/bundle/load.js'
import type {RegistryClient} from '../src/oci/index.js'
import {kpDescriptorV1alpha3} from './helpers/kp.js'

describe('bundle import-kp', () => {
  it('looks up at most --concurrency tags at once', async () => {
    const {bundle: sample} = await loadBundle(join(import.meta.dirname, 'fixtures', 'bundles', 'valid'))
    const file = join(await mkdtemp(join(tmpdir(), 'kpi-import-kp-concurrency-')), 'descriptor.yaml')
    await writeFile(file, stringify(kpDescriptorV1alpha3(sample)))
    let inFlight = 0
    let most = 0
    let lookups = 0
    const client = {
      headManifest: async () => {
        lookups++
        most = Math.max(most, ++inFlight)
        await sleep(20)
        inFlight--
        return undefined
      },
    } as unknown as RegistryClient
    const base = {from: '--kpack-from fixture', metadata: sample.metadata, kpack: sample.kpack, certInjection: sample.certInjection, lifecycle: sample.lifecycle}
    await expect(importKpDescriptor({file, base, client, concurrency: 2})).rejects.toThrow(/cannot resolve/)
    expect(lookups).toBeGreaterThan(2)
    expect(most).toBe(2)
  })
})
