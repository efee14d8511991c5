/**
 * kp DependencyDescriptors read without a registry: what parseKpDescriptor and kpToBundle make of
 * fields kp reads strictly (kp unmarshals through JSON, so a value of the wrong type is an error).
 */
import {describe, expect, it} from 'vitest'
import {isKpiError, type KpiError} from '../src/errors.js'
import {parseKpDescriptor} from '../src/bundle/kp/descriptor.js'
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
