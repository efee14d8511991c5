/**
 * `kpi bundle import-kp --concurrency N` bounds the tag lookups the import makes, as it does for
 * `kpi bundle lock`: against a real registry (distribution, which holds none of the descriptor's
 * tags) behind a proxy on loopback that holds each request 20 ms and counts those in flight.
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {createServer, request} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {stringify} from 'yaml'
import {importKpDescriptor} from '../src/bundle/kp/import.js'
import {loadBundle} from '../src/bundle/load.js'
import {createRegistryClient} from '../src/oci/index.js'
import {startRegistry} from '../src/sandbox/registry.js'
import {kpDescriptorV1alpha3} from './helpers/kp.js'

describe('bundle import-kp', () => {
  it('looks up at most --concurrency tags at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-import-kp-concurrency-'))
    const reg = await startRegistry({runDir: dir, name: 'plain'})
    let inFlight = 0
    let most = 0
    let lookups = 0
    const proxy = createServer((req, res) => {
      const manifest = req.method === 'HEAD' && req.url?.includes('/manifests/')
      if (manifest) {
        lookups++
        most = Math.max(most, ++inFlight)
      }
      setTimeout(() => {
        const up = request({host: '127.0.0.1', port: Number(reg.host.split(':')[1]), method: req.method, path: req.url, headers: req.headers}, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers)
          r.pipe(res)
          r.on('end', () => {
            if (manifest) inFlight--
          })
        })
        req.pipe(up)
      }, 20)
    })
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
    const host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`
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
      await new Promise((r) => proxy.close(r))
      await reg.stop()
      await rm(dir, {recursive: true, force: true})
    }
  })
})
