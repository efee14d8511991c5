/**
 * The benchmark's platform: a SampleSpec (src/imagegen) shaped like a real build service at real
 * sizes, bigger than bundles/sample/sample.yaml (which tests and the demo keep small):
 *
 * - 43 images: 6 kpack images and lifecycle on one small base; a build image and a run image
 *   sharing the stack's base layer, the run image an index over linux/amd64 and linux/arm64;
 *   34 buildpackages, most of them small (one layer of a few MiB), a few composites with large
 *   layers (a JDK, a .NET SDK, a Go distribution), as in a real store.
 * - about 2.2 GiB of unique blobs at scale 1 (the sizes below are real-world ones); `--quick`
 *   runs it at a small scale.
 * - release v2 is a patch release: the stack's amd64 base layer changes (a CVE fix: build and run
 *   image both get the new layer) and one buildpack (example/go-build) changes; every other blob
 *   is byte-identical, so a relocation of v2 over v1 should move only those.
 */
import {join} from 'node:path'
import {openOciLayout} from '../../src/archive/layout.js'
import type {Bundle} from '../../src/bundle/types.js'
import {generateFromSpec, writeBundleDir, type SampleResult, type SampleSpec} from '../../src/imagegen/index.js'
import {createRegistryClient} from '../../src/oci/index.js'
import {fromSource, toRegistry} from '../../src/relocate/registry-endpoints.js'
import {relocate} from '../../src/relocate/relocate.js'

type Layers = SampleSpec['layers']
type Images = SampleSpec['images']
type BuildpackDef = NonNullable<Images[string]['buildpackage']>['buildpacks'][number]

const MIB = 1024 // kib per MiB

const STACK = 'io.buildpacks.stacks.jammy'

/** A composite buildpackage: a top buildpack ordering its components, one layer each. */
interface Family {
  repo: string
  version: string
  components: Array<{id: string; version: string; mib: number}>
}

const families: Family[] = [
  {repo: 'java', version: '10.2.0', components: [
    {id: 'example/bellsoft-liberica', version: '10.4.0', mib: 190},
    {id: 'example/maven', version: '6.15.0', mib: 24},
    {id: 'example/gradle', version: '7.9.0', mib: 18},
    {id: 'example/executable-jar', version: '6.8.0', mib: 3},
    {id: 'example/spring-boot', version: '5.27.0', mib: 6},
  ]},
  {repo: 'dotnet-core', version: '0.42.0', components: [
    {id: 'example/dotnet-core-sdk', version: '0.17.0', mib: 180},
    {id: 'example/dotnet-core-aspnet-runtime', version: '0.9.0', mib: 60},
    {id: 'example/dotnet-publish', version: '0.14.0', mib: 4},
  ]},
  {repo: 'go', version: '4.8.0', components: [
    {id: 'example/go-dist', version: '2.5.0', mib: 110},
    {id: 'example/go-build', version: '1.4.0', mib: 8},
    {id: 'example/go-mod-vendor', version: '1.0.0', mib: 3},
  ]},
  {repo: 'nodejs', version: '2.3.0', components: [
    {id: 'example/node-engine', version: '3.2.0', mib: 64},
    {id: 'example/npm-install', version: '1.4.0', mib: 6},
    {id: 'example/yarn', version: '1.3.0', mib: 9},
  ]},
  {repo: 'python', version: '2.16.0', components: [
    {id: 'example/cpython', version: '1.12.0', mib: 72},
    {id: 'example/pip', version: '0.20.0', mib: 5},
    {id: 'example/poetry', version: '0.9.0', mib: 12},
  ]},
  {repo: 'ruby', version: '0.45.0', components: [
    {id: 'example/mri', version: '0.16.0', mib: 46},
    {id: 'example/bundler', version: '0.8.0', mib: 2},
  ]},
  {repo: 'php', version: '2.14.0', components: [
    {id: 'example/php-dist', version: '1.6.0', mib: 40},
    {id: 'example/composer', version: '0.7.0', mib: 3},
  ]},
]

/** Small single-buildpack buildpackages: utilities every real store carries. */
const utilities: Array<[string, number]> = [
  ['procfile', 2], ['ca-certificates', 3], ['environment-variables', 1], ['image-labels', 1],
  ['syft', 24], ['watchexec', 4], ['git', 6], ['node-start', 1], ['node-run-script', 1],
  ['dotnet-execute', 2], ['python-start', 1], ['pipenv', 8], ['conda', 30], ['rackup', 1],
  ['puma', 1], ['unicorn', 1], ['thin', 1], ['passenger', 1], ['httpd', 14], ['nginx', 12],
  ['apache-tomcat', 22], ['apache-tomee', 26], ['liberty', 48], ['datadog', 16], ['new-relic', 18],
  ['appdynamics', 20], ['leiningen', 10],
]

/** Layers of the kpack images, lifecycle and the stack (MiB). */
const fixedLayers: Layers = {
  'tiny-base': {kib: 2 * MIB, dir: 'usr/lib/tiny', files: {'etc/os-release': 'PRETTY_NAME="kpi tiny"\nID=kpi-tiny\n'}},
  'ca-certificates': {kib: MIB / 4, dir: 'etc/ssl/certs'},
  'kpack-controller': {kib: 48 * MIB, dir: 'ko-app/controller'},
  'kpack-webhook': {kib: 40 * MIB, dir: 'ko-app/webhook'},
  'kpack-build-init': {kib: 52 * MIB, dir: 'ko-app/build-init'},
  'kpack-build-waiter': {kib: 12 * MIB, dir: 'ko-app/build-waiter'},
  'kpack-rebase': {kib: 28 * MIB, dir: 'ko-app/rebase'},
  'kpack-completion': {kib: 14 * MIB, dir: 'ko-app/completion'},
  lifecycle: {kib: 36 * MIB, dir: 'cnb/lifecycle'},
  'jammy-base-amd64-1.0.0': {kib: 90 * MIB, dir: 'usr/lib/x86_64-linux-gnu', files: {'etc/os-release': 'VERSION_ID="22.04"\nID=ubuntu\n'}},
  // the patch release's new base: same size, other bytes (a rebuilt base after a CVE fix)
  'jammy-base-amd64-1.0.1': {kib: 90 * MIB, dir: 'usr/lib/x86_64-linux-gnu', files: {'etc/os-release': 'VERSION_ID="22.04"\nID=ubuntu\nPATCH=1\n'}},
  'jammy-base-arm64-1.0.0': {kib: 86 * MIB, dir: 'usr/lib/aarch64-linux-gnu', files: {'etc/os-release': 'VERSION_ID="22.04"\nID=ubuntu\n'}},
  'build-packages-amd64': {kib: 560 * MIB, dir: 'usr/share/build-packages'},
  'build-config': {kib: 0, files: {'etc/passwd': 'root:x:0:0:root:/root:/bin/bash\ncnb:x:1000:1000::/home/cnb:/bin/bash\n'}},
  'run-config': {kib: 4, dir: 'etc/cnb', files: {'etc/passwd': 'root:x:0:0:root:/root:/bin/bash\ncnb:x:1001:1000::/home/cnb:/bin/bash\n'}},
}

const kpackImages = ['controller', 'webhook', 'build-init', 'build-waiter', 'rebase', 'completion'] as const

function buildpackages(goBuildVersion: string): {images: Images; tops: Array<{name: string; id: string}>} {
  const images: Images = {}
  const tops: Array<{name: string; id: string}> = []
  for (const f of families) {
    const components = f.components.map((c) => (c.id === 'example/go-build' ? {...c, version: goBuildVersion} : c))
    const version = f.repo === 'go' && goBuildVersion !== '1.4.0' ? '4.8.1' : f.version
    const top: BuildpackDef = {id: `example/${f.repo}`, version, api: '0.10', kib: 0, order: [components.map((c) => c.id)]}
    const name = `bp-${f.repo}-${version}`
    images[name] = {
      repository: `buildpacks/${f.repo}`, tag: version,
      buildpackage: {stacks: [STACK], buildpacks: [top, ...components.map((c) => ({id: c.id, version: c.version, api: '0.10', kib: c.mib * MIB}))]},
    }
    tops.push({name, id: top.id})
  }
  for (const [id, mib] of utilities) {
    const name = `bp-${id}-1.0.0`
    images[name] = {
      repository: `buildpacks/${id}`, tag: '1.0.0',
      buildpackage: {stacks: [STACK], buildpacks: [{id: `example/${id}`, version: '1.0.0', api: '0.10', kib: mib * MIB}]},
    }
    tops.push({name, id: `example/${id}`})
  }
  return {images, tops}
}

function release(version: '1.0.0' | '1.0.1'): {images: Images; bundle: Bundle} {
  const patch = version === '1.0.1'
  const base = patch ? 'jammy-base-amd64-1.0.1' : 'jammy-base-amd64-1.0.0'
  const images: Images = {}
  for (const k of kpackImages) {
    images[`kpack-${k}`] = {repository: `kpack/${k}`, tag: '0.16.1', layers: ['tiny-base', 'ca-certificates', `kpack-${k}`], config: {User: '65532'}}
  }
  images.lifecycle = {repository: 'buildpacks/lifecycle', tag: '0.20.4', layers: ['tiny-base', 'lifecycle'], config: {User: '65532'}}
  const stackLabels = {'io.buildpacks.stack.id': STACK, 'io.buildpacks.stack.distro.name': 'ubuntu', 'io.buildpacks.stack.distro.version': '22.04'}
  images[`build-${version}`] = {
    repository: 'stacks/build', tag: `jammy-${version}`, layers: [base, 'build-packages-amd64', 'build-config'],
    config: {User: '1000:1000', Env: ['CNB_USER_ID=1000', 'CNB_GROUP_ID=1000', `CNB_STACK_ID=${STACK}`], Labels: stackLabels},
  }
  images[`run-${version}-amd64`] = {platform: 'linux/amd64', layers: [base, 'run-config'], config: {User: '1001:1000', Labels: stackLabels}}
  images[`run-${version}-arm64`] = {platform: 'linux/arm64', layers: ['jammy-base-arm64-1.0.0', 'run-config'], config: {User: '1001:1000', Labels: stackLabels}}
  images[`run-${version}`] = {repository: 'stacks/run', tag: `jammy-${version}`, index: [`run-${version}-amd64`, `run-${version}-arm64`]}
  const bps = buildpackages(patch ? '1.4.1' : '1.4.0')
  Object.assign(images, bps.images)
  const kpack = (k: string) => `kpack-${k}`
  const bundle: Bundle = {
    apiVersion: 'kpi/v1alpha1',
    kind: 'Bundle',
    metadata: {name: 'bench-platform', version: patch ? '1.0.1' : '1.0.0'},
    kpack: {
      version: '0.16.1',
      images: {controller: kpack('controller'), webhook: kpack('webhook'), buildInit: kpack('build-init'), buildWaiter: kpack('build-waiter'), rebase: kpack('rebase'), completion: kpack('completion')},
    },
    lifecycle: {image: 'lifecycle'},
    stacks: [{name: 'base', id: STACK, buildImage: `build-${version}`, runImage: `run-${version}`}],
    stores: [
      {name: 'languages', sources: bps.tops.slice(0, families.length).map((t) => ({image: t.name}))},
      {name: 'utilities', sources: bps.tops.slice(families.length).map((t) => ({image: t.name}))},
    ],
    builders: [{name: 'base', stack: 'base', store: 'languages', order: families.map((f) => ({group: [{id: `example/${f.repo}`}, {id: 'example/procfile', optional: true}]}))}],
  }
  return {images, bundle}
}

/** The spec with both releases: v1 (1.0.0) and its patch release v2 (1.0.1). */
export function platformSpec(): SampleSpec {
  const v1 = release('1.0.0')
  const v2 = release('1.0.1')
  const layers: Layers = {...fixedLayers}
  return {layers, images: {...v1.images, ...v2.images}, versions: {v1: v1.bundle, v2: v2.bundle}}
}

export interface PlatformRelease {
  version: 'v1' | 'v2'
  sample: SampleResult
  /** the release as a bundle at `host` (the public registry, or a proxy in front of it) */
  bundleAt(host: string): Bundle
  /** a bundle directory for `host`, written once per host under `dir` */
  bundleDir(host: string): Promise<string>
}

/**
 * Generates both releases at `scale` into one OCI layout (src/imagegen caches the layers across
 * runs) and pushes them to the plain-HTTP registry `host` with kpi's own engine (not measured).
 */
export async function preparePlatform(host: string, workDir: string, scale: number): Promise<Record<'v1' | 'v2', PlatformRelease>> {
  const spec = platformSpec()
  const layoutDir = join(workDir, 'platform-layout')
  const out = {} as Record<'v1' | 'v2', PlatformRelease>
  const client = createRegistryClient({plainHttp: (r) => r === host})
  try {
    for (const version of ['v1', 'v2'] as const) {
      const sample = await generateFromSpec(spec, {version, layoutDir, scale})
      const b = sample.bundle(host)
      const layout = await openOciLayout(layoutDir)
      await relocate({from: fromSource(layout.source, b), to: toRegistry(client, {registry: host, prefix: ''})})
      const dirs = new Map<string, Promise<string>>()
      out[version] = {
        version, sample,
        bundleAt: (h) => sample.bundle(h),
        bundleDir: (h) => {
          let d = dirs.get(h)
          if (!d) {
            d = writeBundleDir(sample.bundle(h), join(workDir, 'bundles', `${version}-${h.replace(/[^a-z0-9]+/gi, '-')}`))
            dirs.set(h, d)
          }
          return d
        },
      }
    }
  } finally {
    await client.close()
  }
  return out
}
