/**
 * kp DependencyDescriptors (every version kp reads) made into bundles against the sandbox's
 * public registry, where the sample images are tagged: tags resolve to the digests the registry
 * serves, stack ids come from the images, defaults become "default" entries as kp import makes
 * them, and what a bundle cannot carry is said. `kpi bundle lock` pins a bundle written with tags
 * and names every image it cannot resolve. The imported bundle relocates to the air-gapped registry.
 */
import {chmod, mkdtemp, readFile, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {stringify} from 'yaml'
import {bundleImages} from '../src/bundle/images.js'
import {loadBundle} from '../src/bundle/load.js'
import {serializeBundle} from '../src/bundle/serialize.js'
import type {Bundle} from '../src/bundle/types.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {expectCleanFailure, kpi} from './helpers/cli.js'
import {kpDescriptorV1alpha3, tagOf} from './helpers/kp.js'

let sb: Sandbox
let work: string
let v1: Bundle
/** a sample reference without its digest: `host/repo:tag` */

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kpi-import-kp-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']})
  v1 = sb.bundle.v1!
})

afterAll(async () => {
  await sb?.stop()
})

const v1alpha3 = (): Record<string, unknown> => kpDescriptorV1alpha3(v1)

async function writeDescriptor(name: string, d: unknown): Promise<string> {
  const f = join(work, name)
  await writeFile(f, stringify(d))
  return f
}

describe('kpi bundle import-kp', () => {
  it('v1alpha3 by tag: every reference pinned to the digest the registry serves, stack id from the image, defaults as kp makes them', async () => {
    const file = await writeDescriptor('v1alpha3.yaml', v1alpha3())
    const out = join(work, 'from-v1alpha3')
    const r = await kpi(['bundle', 'import-kp', file, '-o', out, '--kpack-from', sb.bundles.v1!, '--version', '2.0.0', '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as {bundle: string; apiVersion: string; warnings: unknown[]; pinned: Array<{path: string; to: string}>}
    expect(res.apiVersion).toBe('kp.kpack.io/v1alpha3')
    expect(res.warnings).toEqual([])
    const b = (await loadBundle(out)).bundle
    expect(b.metadata).toEqual({name: v1.metadata.name, version: '2.0.0'})
    expect(b.kpack).toEqual(v1.kpack)
    // the same images as the sample, found by tag: tag and digest equal
    expect(b.lifecycle.image).toBe(v1.lifecycle.image)
    expect(b.stacks).toEqual([
      {name: 'jammy', id: 'io.buildpacks.stacks.jammy', buildImage: v1.stacks[0]!.buildImage, runImage: v1.stacks[0]!.runImage},
      {name: 'default', id: 'io.buildpacks.stacks.jammy', buildImage: v1.stacks[0]!.buildImage, runImage: v1.stacks[0]!.runImage},
    ])
    expect(b.stores).toEqual(v1.stores)
    expect(b.builders.map((x) => [x.name, x.stack, x.store])).toEqual([['base', 'jammy', 'default'], ['default', 'jammy', 'default']])
    expect(b.builders[1]!.order).toEqual(v1.builders[0]!.order)
    // one lookup per tagged reference (the default stack's copies were pinned too)
    expect(res.pinned.map((p) => p.path)).toContain('stacks[1].runImage')
    expect(res.pinned.every((p) => /@sha256:[0-9a-f]{64}$/.test(p.to))).toBe(true)
    await writeFile(join(work, 'imported-v1alpha3.yaml'), serializeBundle(b))
  })

  it('v1alpha1 (stores, stacks, defaultStack; no lifecycle): the lifecycle comes from --kpack-from, said as a warning', async () => {
    const d = v1alpha3()
    const file = await writeDescriptor('v1alpha1.yaml', {
      apiVersion: 'kp.kpack.io/v1alpha1', kind: 'DependencyDescriptor', defaultStack: 'jammy', defaultClusterBuilder: 'base',
      stores: d.clusterStores, stacks: d.clusterStacks,
      clusterBuilders: [{name: 'base', stack: 'jammy', store: 'default', order: v1.builders[0]!.order}],
    })
    const out = join(work, 'from-v1alpha1', 'bundle.yaml')
    const r = await kpi(['bundle', 'import-kp', file, '-o', out, '--kpack-from', sb.bundles.v1!], sb.env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(`warning: ${file}: apiVersion: the descriptor names no lifecycle (kp.kpack.io/v1alpha1 has none): the lifecycle of --kpack-from ${sb.bundles.v1!} is used`)
    expect(r.stdout).toMatch(/Wrote .*bundle\.yaml from .* \(kp\.kpack\.io\/v1alpha1\): 2 stacks, 1 stores, 2 builders/)
    const b = (await loadBundle(out)).bundle
    expect(b.lifecycle.image).toBe(v1.lifecycle.image)
    expect(b.builders.map((x) => x.stack)).toEqual(['jammy', 'jammy'])
  })

  it('v1: the default lifecycle is the bundle\'s; ClusterBuildpacks, other lifecycles, order entries by image and unknown fields are said, in --json too', async () => {
    const d = v1alpha3()
    const go = v1.stores[0]!.sources[2]!.image
    const file = await writeDescriptor('v1.yaml', {
      apiVersion: 'kp.kpack.io/v1', kind: 'DependencyDescriptor',
      defaultClusterLifecycle: 'lc-0.20',
      clusterLifecycles: [{name: 'lc-old', image: tagOf(v1.lifecycle.image)}, {name: 'lc-0.20', image: tagOf(v1.lifecycle.image)}],
      clusterBuildpacks: [{name: 'go', image: tagOf(go)}],
      clusterStores: d.clusterStores, clusterStacks: d.clusterStacks,
      clusterBuilders: [{name: 'base', clusterStack: 'jammy', clusterStore: 'default', colour: 'blue', order: [
        {group: [{id: 'example/java'}]},
        {group: [{image: tagOf(go)}]},
      ]}],
    })
    const r = await kpi(['bundle', 'import-kp', file, '-o', join(work, 'from-v1'), '--kpack-from', sb.bundles.v1!, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as {warnings: Array<{path: string; message: string}>}
    const paths = res.warnings.map((w) => w.path)
    expect(paths).toEqual(expect.arrayContaining(['clusterBuilders[0].colour', 'clusterLifecycles[1]', 'clusterLifecycles[0]', 'clusterBuildpacks[0]', 'clusterBuilders[0].order[1].group[0]']))
    expect(res.warnings.find((w) => w.path === 'clusterBuildpacks[0]')!.message).toMatch(/ClusterBuildpack "go" .* is not carried/)
    const b = (await loadBundle(join(work, 'from-v1'))).bundle
    expect(b.lifecycle.image).toBe(v1.lifecycle.image)
    expect(b.builders).toEqual([{name: 'base', stack: 'jammy', store: 'default', order: [{group: [{id: 'example/java'}]}]}])
  })

  it('bad descriptors: one line naming the file and the field', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{...v1alpha3(), apiVersion: 'kp.kpack.io/v1alpha2'}, /v1alpha2.yaml: apiVersion: "kp.kpack.io\/v1alpha2" is not a kp descriptor version: kp reads kp.kpack.io\/v1alpha1, kp.kpack.io\/v1alpha3, kp.kpack.io\/v1$/],
      [{...v1alpha3(), defaultClusterStack: 'nope'}, /: defaultClusterStack: default cluster stack "nope" not found: name one of: jammy$/],
      [{...v1alpha3(), clusterStacks: [{name: 'jammy', buildImage: {image: 'Bad/Ref'}, runImage: {image: 'x/y'}}]}, /: clusterStacks\[0\]\.buildImage\.image: invalid image reference "Bad\/Ref"/],
    ]
    for (const [i, [d, re]] of cases.entries()) {
      const file = await writeDescriptor(i === 0 ? 'v1alpha2.yaml' : `bad-${i}.yaml`, d)
      const r = await kpi(['bundle', 'import-kp', file, '-o', join(work, `bad-${i}`), '--kpack-from', sb.bundles.v1!], sb.env)
      expect(expectCleanFailure(r)).toMatch(re)
      expect(r.code).toBe(3)
    }
  })

  it('a tag the registry lacks: one line naming the descriptor field (said once, though the default stack copies it) and the image', async () => {
    const d = v1alpha3()
    ;(d.clusterStacks as Array<{runImage: {image: string}}>)[0]!.runImage.image = `${sb.public.host}/stacks/run:9.9.9`
    const file = await writeDescriptor('missing.yaml', d)
    const out = join(work, 'missing-out')
    const r = await kpi(['bundle', 'import-kp', file, '-o', out, '--kpack-from', sb.bundles.v1!], sb.env)
    expect(expectCleanFailure(r)).toBe(`Error: cannot resolve ${file}: clusterStacks[0].runImage.image: ${sb.public.host}/stacks/run:9.9.9: no image ${sb.public.host}/stacks/run:9.9.9 in the registry: push the images or fix their references, then import again`)
    expect(r.code).toBe(7)
    await expect(readFile(join(out, 'bundle.yaml'))).rejects.toThrow()
  })

  it('the imported bundle relocates to the air-gapped registry and its lock lints', async () => {
    const bundleFile = join(work, 'imported-v1alpha3.yaml')
    const lock = join(work, 'imported-lock.yaml')
    const r = await kpi(['relocate', '-b', bundleFile, '--to-repo', sb.airgapPrefix, '--lock-output', lock, '--ca-cert', sb.caFile], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const l = (await loadBundle(lock)).bundle
    expect(bundleImages(l).every((i) => i.ref.startsWith(`${sb.airgapPrefix}/`))).toBe(true)
  })
})

describe('kpi bundle lock', () => {
  it('pins every tag (kept digests untouched) in place', async () => {
    const tagged = structuredClone(v1)
    tagged.stacks[0]!.runImage = tagOf(tagged.stacks[0]!.runImage)
    tagged.lifecycle.image = tagOf(tagged.lifecycle.image)
    const file = join(work, 'tagged.yaml')
    await writeFile(file, serializeBundle(tagged))
    // relocate refuses it and says how to pin it
    const refused = await kpi(['relocate', '-b', file, '--to-tar', join(work, 'x.tar')], sb.env)
    expect(expectCleanFailure(refused)).toBe(`Error: ${file}: 2 problems in the bundle`)
    expect(refused.stderr).toContain('is not pinned by digest: pin it: kpi bundle lock BUNDLE resolves every tag to its digest')
    const r = await kpi(['bundle', 'lock', file, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as {pinned: Array<{path: string}>}
    expect(res.pinned.map((p) => p.path).sort()).toEqual(['lifecycle.image', 'stacks[0].runImage'])
    expect((await loadBundle(file)).bundle).toEqual(v1)
  })

  it('changes only the references it pins: comments, quoting, layout and the file mode stay', async () => {
    const tagged = structuredClone(v1)
    const run = tagOf(tagged.stacks[0]!.runImage)
    const lifecycle = tagOf(tagged.lifecycle.image)
    tagged.stacks[0]!.runImage = run
    tagged.lifecycle.image = lifecycle
    // the user's own file: comments, a quoted reference, a flow mapping
    const text = `# build service ${v1.metadata.version}: reviewed by the platform team\n` + serializeBundle(tagged)
      .replace(`runImage: ${run}`, `runImage: "${run}" # the patched run image`)
      .replace(`image: ${lifecycle}`, `image: '${lifecycle}'`)
      .replace(/^stacks:/m, '# stacks: one per OS\nstacks:')
    const file = join(work, 'commented.yaml')
    await writeFile(file, text)
    await chmod(file, 0o600)
    const r = await kpi(['bundle', 'lock', file], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const expected = text
      .replace(`"${run}"`, `"${v1.stacks[0]!.runImage}"`)
      .replace(`'${lifecycle}'`, `'${v1.lifecycle.image}'`)
    expect(await readFile(file, 'utf8')).toBe(expected)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await loadBundle(file)).bundle).toEqual(v1)
  })

  it('names every image it cannot resolve and leaves the bundle as it was', async () => {
    const tagged = structuredClone(v1)
    tagged.stacks[0]!.runImage = `${sb.public.host}/stacks/run:nope`
    tagged.stores[0]!.sources[1]!.image = `${sb.public.host}/buildpacks/absent:1`
    tagged.lifecycle.image = tagOf(tagged.lifecycle.image)
    const file = join(work, 'unresolvable.yaml')
    const text = serializeBundle(tagged)
    await writeFile(file, text)
    const r = await kpi(['bundle', 'lock', file], sb.env)
    expect(expectCleanFailure(r)).toBe('Error: cannot resolve 2 images to digests (push the images or fix their references, then run kpi bundle lock again):')
    expect(r.stderr).toContain(`  stacks[0].runImage: ${sb.public.host}/stacks/run:nope: `)
    expect(r.stderr).toContain(`  stores[0].sources[1].image: ${sb.public.host}/buildpacks/absent:1: `)
    expect(await readFile(file, 'utf8')).toBe(text)
  })
})

describe('kp descriptor to bundle, without a registry', () => {
  it('carries the base\'s kpack and cert-injection-webhook images, which a descriptor never names', async () => {
    const {parseKpDescriptor} = await import('../src/bundle/kp/descriptor.js')
    const {kpToBundle} = await import('../src/bundle/kp/to-bundle.js')
    const d = parseKpDescriptor(stringify({
      apiVersion: 'kp.kpack.io/v1', kind: 'DependencyDescriptor',
      clusterLifecycles: [{name: 'default-lifecycle', image: 'registry.example/lifecycle:0.20'}],
      clusterStores: [{name: 'default', sources: [{image: 'registry.example/bp/java:1'}]}],
      clusterStacks: [{name: 'base', buildImage: {image: 'registry.example/build:1'}, runImage: {image: 'registry.example/run:1'}}],
      clusterBuilders: [{name: 'base', clusterStack: 'base', clusterStore: 'default', order: [{group: [{id: 'example/java'}]}]}],
    }), 'd.yaml')
    const digest = `sha256:${'a'.repeat(64)}`
    const certInjection = {webhook: `registry.example/cert-injection-webhook@${digest}`, setupCaCerts: `registry.example/setup-ca-certs@${digest}`}
    const {bundle, notes, sources} = kpToBundle(d, {
      from: '--kpack-from base', metadata: {name: 'bs', version: '1.0.0'},
      kpack: v1.kpack, certInjection, lifecycle: {image: 'unused'},
    })
    expect(notes).toEqual([])
    expect(bundle.certInjection).toEqual(certInjection)
    expect(bundle.kpack).toEqual(v1.kpack)
    expect(bundle.lifecycle.image).toBe('registry.example/lifecycle:0.20')
    expect(sources.get('stacks[0].runImage')).toBe('clusterStacks[0].runImage.image')
    expect(sources.get('lifecycle.image')).toBe('clusterLifecycles[0].image')
  })
})
