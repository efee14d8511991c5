/**
 * The rendered objects against a real kube-apiserver (the sandbox control plane): CRDs and
 * namespaces applied first, then every other object server-side dry-run applied, so the apiserver
 * validates them all (kpack objects against kpi's CRD schemas). Then the precise schemas are shown
 * to reject what kpack would reject, and a real apply in stage order shows the install goes through
 * on a cluster where no kpack code runs (kpack's webhooks intercept nothing until kpack-webhook runs).
 */
import {ApiextensionsV1Api, KubernetesObjectApi, loadYaml, PatchStrategy, type KubernetesObject} from '@kubernetes/client-node'
import {beforeAll, describe, expect, it} from 'vitest'
import {renderPlatform} from '../src/render/render.js'
import type {KubeObject, RenderedObject} from '../src/render/types.js'
import {waitFor} from '../src/sandbox/procs.js'
import {lock13, lock17, values} from './fixtures/render/helpers.js'
import {useControlPlane} from './helpers/controlplane.js'


// a missing control-plane binary fails the file with the tool named (scripts/tools.sh builds them)
const plane = useControlPlane('render-apply')
let client: KubernetesObjectApi

const FIELD_MANAGER = 'kpi'

/**
 * KubernetesObjectApi serialises built-in kinds through its generated models, which name some wire
 * fields differently (`enum` is `_enum`, `x-kubernetes-preserve-unknown-fields` is
 * `x_kubernetes_preserve_unknown_fields`) and drop what they do not recognise: a plain wire-format
 * CRD would lose its enums and preserve-unknown-fields on the way out. Deserialising it into the
 * models first (loadYaml does that; JSON is YAML) makes the round trip exact.
 */
const toModel = (o: KubeObject): KubernetesObject => loadYaml<KubernetesObject>(JSON.stringify(o))

async function apply(o: KubeObject, dryRun: boolean): Promise<KubernetesObject> {
  return client.patch(toModel(o), undefined, dryRun ? 'All' : undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply)
}

/** The apiserver's message for a failed request, for assertions and failure output. */
function reason(e: unknown): string {
  const body = (e as {body?: unknown}).body
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as {message?: string}).message ?? body
    } catch {
      return body
    }
  }
  return (body as {message?: string} | undefined)?.message ?? String(e)
}

const describeObj = (o: KubeObject) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`

async function applyAll(objs: RenderedObject[], dryRun: boolean): Promise<string[]> {
  const failures: string[] = []
  for (const {object} of objs) {
    try {
      await apply(object, dryRun)
    } catch (e) {
      failures.push(`${describeObj(object)}: ${reason(e)}`)
    }
  }
  return failures
}

async function waitEstablished(names: string[]): Promise<void> {
  const ext = plane.kc.makeApiClient(ApiextensionsV1Api)
  for (const name of names) {
    await waitFor(async () => {
      const crd = await ext.readCustomResourceDefinition({name})
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false
    }, {what: `CRD ${name} established`, timeoutMs: 60_000})
  }
}

const title = "rendered platform on a real kube-apiserver"

describe(title, () => {
  beforeAll(async () => {
    client = KubernetesObjectApi.makeApiClient(plane.kc)
  })

  it('accepts every object: CRDs and namespaces first, then all the rest as a server-side dry run', async () => {
    plane.nameRunDir()
    const {objects} = renderPlatform(await lock17(), await values())
    const first = objects.filter((o) => o.object.kind === 'CustomResourceDefinition' || o.object.kind === 'Namespace')
    expect(await applyAll(first, false)).toEqual([])
    await waitEstablished(first.filter((o) => o.object.kind === 'CustomResourceDefinition').map((o) => o.object.metadata.name))
    // the schemas arrived whole (enums and preserve-unknown-fields included)
    const ext = plane.kc.makeApiClient(ApiextensionsV1Api)
    const stored = await ext.readCustomResourceDefinition({name: 'clusterbuilders.kpack.io'})
    const v2 = stored.spec.versions.find((v) => v.name === 'v1alpha2')!.schema!.openAPIV3Schema!
    expect(v2.properties!.spec!.properties!.stack!.properties!.kind!._enum).toEqual(['ClusterStack'])
    expect(v2.properties!.status!.x_kubernetes_preserve_unknown_fields).toBe(true)
    const rest = objects.filter((o) => !first.includes(o))
    expect(rest.length).toBeGreaterThan(30)
    expect(await applyAll(rest, true)).toEqual([])
    // the kpack 0.13 rendering too (its CRDs are a subset of 0.17's)
    const old = renderPlatform(await lock13(), await values()).objects.filter((o) => o.object.kind !== 'CustomResourceDefinition' && o.object.kind !== 'Namespace')
    expect(await applyAll(old, true)).toEqual([])
  })

  it('rejects kpack objects that kpack would reject: the schemas are precise', async () => {
    const {objects} = renderPlatform(await lock17(), await values())
    const get = (kind: string) => structuredClone(objects.find((o) => o.object.kind === kind)!.object) as KubeObject & {spec: Record<string, unknown>}
    const rejected = async (o: KubeObject): Promise<string> => {
      try {
        await apply(o, true)
      } catch (e) {
        return reason(e)
      }
      throw new Error(`${describeObj(o)} was accepted`)
    }
    const stack = get('ClusterStack')
    delete stack.spec.id
    expect(await rejected(stack)).toMatch(/spec\.id: Required value/)

    const runless = get('ClusterStack')
    runless.spec.runImage = {}
    expect(await rejected(runless)).toMatch(/spec\.runImage\.image: Required value/)

    const builder = get('ClusterBuilder')
    ;(builder.spec.serviceAccountRef as Record<string, unknown>).namespace = undefined
    delete (builder.spec.serviceAccountRef as Record<string, unknown>).namespace
    expect(await rejected(builder)).toMatch(/spec\.serviceAccountRef\.namespace: Required value/)

    const wrongKind = get('ClusterBuilder')
    wrongKind.spec.stack = {kind: 'Stack', name: 'base'}
    expect(await rejected(wrongKind)).toMatch(/spec\.stack\.kind: Unsupported value: "Stack"/)

    const group = get('ClusterBuilder')
    group.spec.order = [{group: [{version: '1.0.0'}]}]
    expect(await rejected(group)).toMatch(/spec\.order\[0\]\.group\[0\]/)

    const typo = get('ClusterStore')
    typo.spec.sorces = typo.spec.sources
    delete typo.spec.sources
    expect(await rejected(typo)).toMatch(/sorces|spec\.sources: Required value/)

    const lifecycle = get('ClusterLifecycle')
    lifecycle.spec.image = 42
    expect(await rejected(lifecycle)).toMatch(/spec\.image/)
  })

  it('accepts the Builders kpack accepts: no store, group entries by image or by kind + name; still requires the tag', async () => {
    plane.nameRunDir()
    const {objects} = renderPlatform(await lock17(), await values())
    // self-contained: the CRDs and namespaces (idempotent if an earlier test applied them)
    const first = objects.filter((o) => o.object.kind === 'CustomResourceDefinition' || o.object.kind === 'Namespace')
    expect(await applyAll(first, false)).toEqual([])
    await waitEstablished(first.filter((o) => o.object.kind === 'CustomResourceDefinition').map((o) => o.object.metadata.name))
    const rendered = objects.find((o) => o.object.kind === 'Builder')!.object
    expect(rendered.metadata.namespace).toBeTruthy()
    const builder = (name: string, order: unknown): KubeObject & {spec: Record<string, unknown>} => {
      const b = structuredClone(rendered) as KubeObject & {spec: Record<string, unknown>}
      b.metadata.name = name
      delete b.spec.store
      b.spec.order = order
      return b
    }
    const byImage = builder('by-image', [{group: [{image: 'registry.corp.example:5000/buildpacks/java@sha256:' + 'b'.repeat(64)}]}])
    const byRef = builder('by-ref', [{group: [{kind: 'ClusterBuildpack', name: 'x'}]}, {group: [{id: 'paketo-buildpacks/nodejs', version: '1.2.3', optional: true}]}])
    for (const b of [byImage, byRef]) {
      const got = (await apply(b, true).catch((e: unknown) => {
        throw new Error(`${describeObj(b)} was rejected: ${reason(e)}`)
      })) as KubernetesObject & {spec: Record<string, unknown>}
      // accepted whole: nothing pruned from the group entries
      expect(got.spec.order).toEqual(b.spec.order)
      expect(got.spec.store).toBeUndefined()
    }
    // as kpack's defaulting webhook leaves a Builder that names no store (the kind set, no name),
    // with the labels kpack puts on the builder image: both kept
    const defaulted = builder('defaulted-store', [{group: [{kind: 'ClusterBuildpack', name: 'x'}]}])
    defaulted.spec.store = {kind: 'ClusterStore'}
    defaulted.spec.additionalLabels = {'team.example/owner': 'payments'}
    const kept = (await apply(defaulted, true).catch((e: unknown) => {
      throw new Error(`${describeObj(defaulted)} was rejected: ${reason(e)}`)
    })) as KubernetesObject & {spec: Record<string, unknown>}
    expect(kept.spec.store).toEqual({kind: 'ClusterStore'})
    expect(kept.spec.additionalLabels).toEqual({'team.example/owner': 'payments'})
    const tagless = builder('tagless', [{group: [{kind: 'ClusterBuildpack', name: 'x'}]}])
    delete tagless.spec.tag
    const why = await apply(tagless, true).then(
      () => 'accepted',
      (e: unknown) => reason(e),
    )
    expect(why).toMatch(/spec\.tag: Required value/)
  })

  it('installs for real in stage order where no kpack code runs: kpack webhooks intercept nothing yet', async () => {
    plane.nameRunDir()
    const {objects} = renderPlatform(await lock17(), await values())
    const failures: string[] = []
    for (const {object} of objects) {
      try {
        await apply(object, false)
      } catch (e) {
        failures.push(`${describeObj(object)}: ${reason(e)}`)
      }
      if (object.kind === 'CustomResourceDefinition') await waitEstablished([object.metadata.name])
    }
    expect(failures).toEqual([])
    const read = (apiVersion: string, kind: string, name: string, namespace?: string) =>
      client.read({apiVersion, kind, metadata: {name, ...(namespace ? {namespace} : {})}})
    const cb = (await read('kpack.io/v1alpha2', 'ClusterBuilder', 'base')) as KubernetesObject & {spec: {tag: string}}
    expect(cb.spec.tag).toBe('registry.corp.example:5000/platform/kpack/builders/base')
    expect((await read('kpack.io/v1alpha2', 'Builder', 'java-only', 'payments')).metadata?.labels?.['kpi.dev/stage']).toBe('teams')
    // applying again changes nothing and conflicts with nothing (server-side apply is idempotent)
    const second = await applyAll(objects, false)
    expect(second).toEqual([])
  })
})
