/**
 * kp DependencyDescriptors read without a registry: what parseKpDescriptor and kpToBundle make of
 * fields kp reads strictly (kp unmarshals through JSON, so a value of the wrong type is an error),
 * and importKpDescriptor against a real registry, one repository behind a slow path.
 */
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {isKpiError, KpiError} from '../src/errors.js'
import {parseKpDescriptor} from '../src/bundle/kp/descriptor.js'
import {importKpDescriptor} from '../src/bundle/kp/import.js'
import {createRegistryClient} from '../src/oci/index.js'
import {startRegistry} from '../src/sandbox/registry.js'
import {startDelayProxy} from './helpers/delay-proxy.js'
import {kpToBundle} from '../src/bundle/kp/to-bundle.js'

const base = {
  from: '--kpack-from base',
  metadata: {name: 'build-service', version: '1.0.0'},
  kpack: {version: '0.16.1', images: {controller: 'c', webhook: 'w', buildInit: 'i', buildWaiter: 'bw', rebase: 'r', completion: 'co'}},
  lifecycle: {image: 'registry.example/lifecycle:1'},
}

const descriptor = (optional: string): string => `apiVersion: kp.kpack.io/v1
kind: DependencyDescriptor
clusterStores:
  - name: default
    sources: [{image: registry.example/buildpacks/java:1}]
clusterStacks:
  - name: base
    buildImage: {image: registry.example/stacks/build:1}
    runImage: {image: registry.example/stacks/run:1}
clusterBuilders:
  - name: base
    clusterStack: base
    clusterStore: default
    order:
      - group:
          - id: example/java
          - id: example/debug
${optional}
`

function parseError(text: string): KpiError {
  try {
    parseKpDescriptor(text, 'descriptor.yaml')
  } catch (e) {
    if (isKpiError(e)) return e
    throw e
  }
  throw new Error('expected the descriptor to be refused')
}

describe('order entries: optional', () => {
  it('carries a boolean optional', () => {
    const b = kpToBundle(parseKpDescriptor(descriptor('            optional: true'), 'descriptor.yaml'), base).bundle
    expect(b.builders[0]!.order[0]!.group).toEqual([{id: 'example/java'}, {id: 'example/debug', optional: true}])
  })

  it('refuses an optional that is not a boolean instead of dropping it (the buildpack would become required)', () => {
    const e = parseError(descriptor('            optional: "true"'))
    expect(e.kind).toBe('input')
    expect(e.message).toBe('descriptor.yaml: clusterBuilders[0].order[0].group[1].optional: expected true or false, got "true"')
  })
})

describe('importKpDescriptor: stack ids', () => {
  it('a stack whose images fail fast while another is still read is one error, not an unhandled rejection', async () => {
    const digest = (c: string) => `sha256:${c.repeat(64)}`
    const dir = await mkdtemp(join(tmpdir(), 'kpi-kp-'))
    // a real registry that holds none of these images; the slow stack's are asked through a path
    // that takes a while, the broken one's answer at once
    const reg = await startRegistry({runDir: dir, name: 'plain'})
    const proxy = await startDelayProxy(reg.host, {delayMs: (req) => (req.url?.includes('/slow/') ? 200 : 0)})
    const host = proxy.host
    const client = createRegistryClient({plainHttp: (r) => r === host})
    const file = join(dir, 'descriptor.yaml')
    await writeFile(file, `apiVersion: kp.kpack.io/v1alpha3
kind: DependencyDescriptor
clusterStores:
  - name: default
    sources: [{image: "${host}/buildpacks/java@${digest('1')}"}]
clusterStacks:
  - name: slow
    buildImage: {image: "${host}/slow/build@${digest('2')}"}
    runImage: {image: "${host}/slow/run@${digest('3')}"}
  - name: broken
    buildImage: {image: "${host}/broken/build@${digest('4')}"}
    runImage: {image: "${host}/broken/run@${digest('5')}"}
`)
    const pinned = {
      ...base,
      kpack: {version: '0.16.1', images: Object.fromEntries(Object.keys(base.kpack.images).map((k, i) => [k, `${host}/kpack/${k.toLowerCase()}@${digest(String.fromCharCode(97 + i))}`])) as typeof base.kpack.images},
      lifecycle: {image: `${host}/lifecycle@${digest('6')}`},
    }
    const unhandled: unknown[] = []
    const onUnhandled = (e: unknown) => unhandled.push(e)
    process.on('unhandledRejection', onUnhandled)
    try {
      const e = await importKpDescriptor({file, base: pinned, client}).then(() => undefined, (err: unknown) => err)
      expect(isKpiError(e) && e.kind).toBe('not-found')
      // the slow stack's reads end after the import failed
      await new Promise((r) => setTimeout(r, 400))
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
      await client.close()
      await proxy.stop()
      await reg.stop()
      await rm(dir, {recursive: true, force: true})
    }
  })
})

describe('defaults named "default"', () => {
  const withDefaults = (stacks: string[], defaultStack: string): string => `apiVersion: kp.kpack.io/v1alpha3
kind: DependencyDescriptor
defaultClusterStack: ${defaultStack}
defaultClusterBuilder: default
clusterStores:
  - name: st
    sources: [{image: registry.example/buildpacks/java:1}]
clusterStacks:
${stacks.map((n) => `  - name: ${n}\n    buildImage: {image: registry.example/${n}/build:1}\n    runImage: {image: registry.example/${n}/run:1}`).join('\n')}
clusterBuilders:
  - name: default
    clusterStack: ${defaultStack}
    clusterStore: st
    order: [{group: [{id: example/java}]}]
`
  const lifecycleNote = (n: {path: string}) => n.path !== 'lifecycle'

  it('a default that is itself named "default" is kept as it is, with no note of a replacement', () => {
    const r = kpToBundle(parseKpDescriptor(withDefaults(['default'], 'default'), 'descriptor.yaml'), base)
    expect(r.bundle.stacks.map((s) => s.name)).toEqual(['default'])
    expect(r.bundle.builders.map((b) => b.name)).toEqual(['default'])
    expect(r.notes.filter(lifecycleNote)).toEqual([])
  })

  it('another entry named "default" is replaced by the default\'s copy, and said', () => {
    const r = kpToBundle(parseKpDescriptor(withDefaults(['default', 'base'], 'base'), 'descriptor.yaml'), base)
    expect(r.bundle.stacks.map((s) => [s.name, s.buildImage])).toEqual([['default', 'registry.example/base/build:1'], ['base', 'registry.example/base/build:1']])
    expect(r.notes.filter(lifecycleNote)).toEqual([{path: 'defaultClusterStack', message: 'the stack named "default" is replaced by a copy of the default stack, as kp import does'}])
  })
})
