/**
 * `kpi bundle import-kp --concurrency N` bounds the tag lookups the import makes, as it does for
 * `kpi bundle lock`: against a real registry (distribution, which holds none of the descriptor's
 * tags) behind a proxy on loopback that holds each request 200 ms and counts those in flight.
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import type {IncomingMessage} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {stringify} from 'yaml'
import {importKpDescriptor} from '../src/bundle/kp/import.js'
import {loadBundle} from '../src/bundle/load.js'
import {createRegistryClient} from '../src/oci/index.js'
import {startRegistry} from '../src/sandbox/registry.js'
import {kpDescriptorV1alpha3} from './helpers/kp.js'
import {startDelayProxy} from './helpers/delay-proxy.js'

describe('bundle import-kp', () => {
  it('looks up at most --concurrency tags at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-import-kp-concurrency-'))
    const reg = await startRegistry({runDir: dir, name: 'plain'})
    let inFlight = 0
    let most = 0
    let lookups = 0
    const lookup = (req: IncomingMessage) => req.method === 'HEAD' && !!req.url?.includes('/manifests/')
    const proxy = await startDelayProxy(reg.host, {
      // long enough that two lookups the client runs at once overlap at the proxy even on a loaded machine
      delayMs: () => 200,
      onStart: (req) => {
        if (!lookup(req)) return
        lookups++
        most = Math.max(most, ++inFlight)
      },
      onEnd: (req) => {
        if (lookup(req)) inFlight--
      },
    })
    const host = proxy.host
    const client = createRegistryClient({plainHttp: (r) => r === host})
    try {
      const {bundle: sample} = await loadBundle(join(import.meta.dirname, 'fixtures', 'bundles', 'valid'))
      const file = join(dir, 'descriptor.yaml')
      // the descriptor's public images, named in the registry behind the proxy
      await writeFile(file, stringify(kpDescriptorV1alpha3(sample)).replaceAll('registry.example', host))
      const base = {from: '--kpack-from fixture', metadata: sample.metadata, kpack: sample.kpack, certInjection: sample.certInjection, lifecycle: sample.lifecycle}
      await expect(importKpDescriptor({file, base, client, concurrency: 2})).rejects.toThrow(/cannot resolve/)
      expect(lookups).toBeGreaterThan(2)
      expect(most).toBe(2)
    } finally {
      await client.close()
      await proxy.stop()
      await reg.stop()
      await rm(dir, {recursive: true, force: true})
    }
  })
})
