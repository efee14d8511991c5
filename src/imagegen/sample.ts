/**
 * The sample build-service platform (bundles/sample/sample.yaml) generated into an OCI image
 * layout: kpack images, lifecycle, a stack whose run image is a two-platform index, and
 * buildpackages, for releases v1 and v2. Returns the images and a bundle for any registry.
 */
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parse} from 'yaml'
import {bundleImages, mapBundleImages, serializeBundle} from '../bundle/index.js'
import type {Bundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import {packageRoot} from '../package-root.js'
import type {Descriptor, Platform} from '../oci/index.js'
import {generateImage, generateIndex, layerWriter, type GeneratedImage, type ImageConfigSpec, type LayerWriter} from './image.js'
import {tagImages} from './layout.js'
import type {LayerBlob, LayerFile, LayerOptions, LayerSpec} from './layer.js'

/** bundles/sample/sample.yaml, found from src/imagegen (tests) and dist/imagegen (the CLI) alike */
export const SAMPLE_SPEC = join(packageRoot(import.meta.url), 'bundles', 'sample', 'sample.yaml')

export interface SampleLayerDef {
  kib: number
  seed?: string
  dir?: string
  files?: Record<string, string>
}

export interface SampleBuildpackDef {
  id: string
  version: string
  api: string
  kib: number
  homepage?: string
  /** composite buildpacks: groups of component ids (their versions come from this list) */
  order?: string[][]
}

/** A lifecycle's API versions, as lifecycle.toml and the labels kpack reads carry them. */
export interface SampleLifecycleApis {
  buildpack: {deprecated: string[]; supported: string[]}
  platform: {deprecated: string[]; supported: string[]}
}

/**
 * A lifecycle image as kpack reads it: one layer per OS (layer names from `layers`), the linux one
 * last, and the labels that name them. See lifecycleLabels.
 */
export interface SampleLifecycleDef {
  version: string
  /** the deprecated single API versions (lifecycle.toml's [api]) */
  api: {buildpack: string; platform: string}
  apis: SampleLifecycleApis
  /** layer names: the lifecycle for linux, and for windows */
  linux: string
  windows: string
}

export interface SampleImageDef {
  repository?: string
  tag?: string
  /** os/arch[/variant], default linux/amd64 */
  platform?: string
  layers?: string[]
  config?: ImageConfigSpec
  /** an index over these (platform) images */
  index?: string[]
  buildpackage?: {stacks: string[]; buildpacks: SampleBuildpackDef[]}
  /** a lifecycle image: its layers come from here (after `layers`, if any) */
  lifecycle?: SampleLifecycleDef
}

export interface SampleSpec {
  layers: Record<string, SampleLayerDef>
  images: Record<string, SampleImageDef>
  /** per release, a bundle whose image fields are image names from `images` */
  versions: Record<string, Bundle>
}

export interface SampleImage {
  /** where it sits in the bundle, e.g. stacks[0].runImage */
  path: string
  repository: string
  tag: string
  digest: string
  mediaType: string
  /** size of the manifest or index */
  size: number
  /** the layout's ref.name for it (`<repository>:<tag>`), e.g. for skopeo `oci:<dir>:<refName>` */
  refName: string
}

export interface SampleResult {
  layoutDir: string
  version: string
  images: SampleImage[]
  /** bytes of all distinct blobs (layers, configs, manifests, indexes) of this release */
  bytes: number
  /** the release as a bundle whose references are `<host>/<prefix>/<repository>:<tag>@<digest>` */
  bundle: (registryHost: string, prefix?: string) => Bundle
}

export interface SampleOptions extends LayerOptions {
  version: 'v1' | 'v2' | (string & {})
  layoutDir: string
  /** multiplies every layer size; 1 = about 4 MiB per release, 256 = about 1 GiB */
  scale?: number
  /** another spec file of the same shape; default bundles/sample/sample.yaml */
  specFile?: string
}

export async function loadSampleSpec(file = SAMPLE_SPEC): Promise<SampleSpec> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    throw new KpiError('input', `${file}: sample spec not found`, {hint: 'pass an existing spec file'})
  }
  const spec = parse(text, {merge: true}) as Partial<SampleSpec> | null
  if (!spec || typeof spec !== 'object' || !spec.layers || !spec.images || !spec.versions) {
    throw new KpiError('input', `${file}: a sample spec needs layers, images and versions`)
  }
  return spec as SampleSpec
}

export async function generateSample(opts: SampleOptions): Promise<SampleResult> {
  const spec = await loadSampleSpec(opts.specFile)
  return generateFromSpec(spec, opts)
}

function parsePlatform(p: string | undefined): Platform {
  const [os = 'linux', architecture = 'amd64', variant] = (p ?? 'linux/amd64').split('/')
  return variant ? {architecture, os, variant} : {architecture, os}
}

/** Generates one release of a spec into opts.layoutDir. */
export async function generateFromSpec(spec: SampleSpec, opts: SampleOptions): Promise<SampleResult> {
  const scale = opts.scale ?? 1
  if (!(scale > 0 && Number.isFinite(scale))) throw new KpiError('usage', `scale must be a positive number, got ${scale}`)
  const release = spec.versions[opts.version]
  if (!release) {
    throw new KpiError('usage', `unknown sample version "${opts.version}"`, {hint: `use one of: ${Object.keys(spec.versions).join(', ')}`})
  }
  const bytes = (kib: number): number => Math.round(kib * 1024 * scale)
  const write: LayerWriter = layerWriter(opts.layoutDir, opts)
  const blobs = new Map<string, number>()
  const count = (d: {digest: string; size: number}): void => void blobs.set(d.digest, d.size)

  const layerSpec = (name: string, owner: string): LayerSpec => {
    const def = spec.layers[name]
    if (!def) throw new KpiError('input', `sample spec: image ${owner} names unknown layer "${name}"`)
    const files: LayerFile[] = Object.entries(def.files ?? {}).map(([path, content]) => ({path, content}))
    return {seed: def.seed ?? name, size: bytes(def.kib), ...(def.dir ? {dir: def.dir} : {}), ...(files.length ? {files} : {})}
  }

  const made = new Map<string, Promise<{descriptor: Descriptor}>>()
  const make = (name: string): Promise<{descriptor: Descriptor}> => {
    let p = made.get(name)
    if (!p) {
      p = makeImage(name)
      made.set(name, p)
    }
    return p
  }
  const track = (img: GeneratedImage): GeneratedImage => {
    img.layers.forEach(count)
    count(img.config)
    count(img.descriptor)
    return img
  }
  const makeImage = async (name: string): Promise<{descriptor: Descriptor}> => {
    const def = spec.images[name]
    if (!def) throw new KpiError('input', `sample spec: unknown image "${name}"`)
    if (def.index) {
      const children: GeneratedImage[] = []
      for (const c of def.index) children.push((await make(c)) as GeneratedImage)
      const idx = await generateIndex(opts.layoutDir, children)
      count(idx.descriptor)
      return idx
    }
    if (def.buildpackage) return track(await buildpackage(name, def, def.buildpackage))
    const layers = (def.layers ?? []).map((l) => layerSpec(l, name))
    const lc = def.lifecycle
    // windows before linux: kpack 0.17 takes the image's last layer as the lifecycle
    if (lc) layers.push(layerSpec(lc.windows, name), layerSpec(lc.linux, name))
    const labels = lc ? (written: LayerBlob[]) => lifecycleLabels(lc, written[written.length - 2]!.diffId, written[written.length - 1]!.diffId) : undefined
    return track(await generateImage(opts.layoutDir, {platform: parsePlatform(def.platform), layers, config: def.config, labels}, {writeLayer: write}))
  }

  const buildpackage = (name: string, def: SampleImageDef, bp: NonNullable<SampleImageDef['buildpackage']>): Promise<GeneratedImage> => {
    const [top] = bp.buildpacks
    if (!top) throw new KpiError('input', `sample spec: buildpackage ${name} has no buildpacks`)
    const versions = new Map(bp.buildpacks.map((b) => [b.id, b.version]))
    const stacks = bp.stacks.map((id) => ({id}))
    const layers = bp.buildpacks.map((b) => buildpackLayer(b, bp.stacks, versions, bytes(b.kib)))
    const labels = (written: LayerBlob[]): Record<string, string> => {
      const byId: Record<string, Record<string, unknown>> = {}
      bp.buildpacks.forEach((b, i) => {
        const entry: Record<string, unknown> = {api: b.api}
        if (b.order) entry.order = b.order.map((g) => ({group: g.map((id) => ({id, version: versions.get(id)}))}))
        else entry.stacks = stacks
        entry.layerDiffID = written[i]?.diffId
        entry.homepage = b.homepage ?? `https://example.com/buildpacks/${b.id}`
        byId[b.id] = {...byId[b.id], [b.version]: entry}
      })
      return {
        'io.buildpacks.buildpackage.metadata': JSON.stringify({id: top.id, version: top.version, homepage: top.homepage ?? `https://example.com/buildpacks/${top.id}`, stacks}),
        'io.buildpacks.buildpack.layers': JSON.stringify(byId),
      }
    }
    return generateImage(opts.layoutDir, {platform: parsePlatform(def.platform), layers, config: def.config, labels}, {writeLayer: write})
  }

  // Generate and tag every image the release's bundle names.
  const tagged: Array<{path: string; name: string; def: SampleImageDef; descriptor: Descriptor}> = []
  for (const {path, ref: name} of bundleImages(release)) {
    const def = spec.images[name]
    if (!def?.repository || !def.tag) throw new KpiError('input', `sample spec: ${opts.version} ${path} must name a tagged image (repository and tag), got "${name}"`)
    const {descriptor} = await make(name)
    tagged.push({path, name, def, descriptor})
  }
  await tagImages(opts.layoutDir, tagged.map((t) => ({descriptor: t.descriptor, repository: t.def.repository!, tag: t.def.tag!})))

  const images: SampleImage[] = tagged.map((t) => ({
    path: t.path,
    repository: t.def.repository!,
    tag: t.def.tag!,
    digest: t.descriptor.digest,
    mediaType: t.descriptor.mediaType,
    size: t.descriptor.size,
    refName: `${t.def.repository!}:${t.def.tag!}`,
  }))
  const byPath = new Map(images.map((i) => [i.path, i]))
  return {
    layoutDir: opts.layoutDir,
    version: opts.version,
    images,
    bytes: [...blobs.values()].reduce((a, b) => a + b, 0),
    bundle: (registryHost, prefix) => {
      const base = [registryHost, prefix].filter((s) => s !== undefined && s !== '').join('/').replace(/\/+$/, '')
      return mapBundleImages(release, (_name, path) => {
        const i = byPath.get(path)!
        return `${base}/${i.repository}:${i.tag}@${i.digest}`
      })
    },
  }
}

/**
 * The labels of a lifecycle image, for every kpack version the sample stands for:
 * - kpack up to 0.16 (the lifecycle-image ConfigMap): `io.buildpacks.lifecycle.metadata` and one
 *   label per OS, `linux` and `windows`, naming that OS's lifecycle layer by diff_id, as the
 *   images kpack's hack/lifecycle builds (pkg/config/lifecycle_provider.go reads both OS labels);
 * - kpack 0.17 (ClusterLifecycle, pkg/cnb/remote_lifecycle_reader.go): `io.buildpacks.builder.metadata`
 *   (the lifecycle descriptor) and `io.buildpacks.lifecycle.apis`, as buildpacksio/lifecycle carries.
 */
function lifecycleLabels(lc: SampleLifecycleDef, windowsDiffId: string, linuxDiffId: string): Record<string, string> {
  const apis = {
    buildpack: {deprecated: lc.apis.buildpack.deprecated, supported: lc.apis.buildpack.supported},
    platform: {deprecated: lc.apis.platform.deprecated, supported: lc.apis.platform.supported},
  }
  const api = {buildpack: lc.api.buildpack, platform: lc.api.platform}
  return {
    linux: linuxDiffId,
    windows: windowsDiffId,
    'io.buildpacks.lifecycle.metadata': JSON.stringify({version: lc.version, api, apis}),
    'io.buildpacks.builder.metadata': JSON.stringify({lifecycle: {version: lc.version}, api, apis}),
    'io.buildpacks.lifecycle.apis': JSON.stringify(apis),
    'io.buildpacks.lifecycle.version': lc.version,
  }
}

/** One buildpack's layer: cnb/buildpacks/<id with / as _>/<version>/ with buildpack.toml and bin/. */
function buildpackLayer(b: SampleBuildpackDef, stacks: string[], versions: Map<string, string>, size: number): LayerSpec {
  const root = `cnb/buildpacks/${b.id.replace(/\//g, '_')}/${b.version}`
  const toml = [
    `api = "${b.api}"`,
    '',
    '[buildpack]',
    `  id = "${b.id}"`,
    `  version = "${b.version}"`,
    `  homepage = "${b.homepage ?? `https://example.com/buildpacks/${b.id}`}"`,
    '',
    ...(b.order
      ? b.order.flatMap((g) => ['[[order]]', ...g.flatMap((id) => ['  [[order.group]]', `    id = "${id}"`, `    version = "${versions.get(id) ?? ''}"`]), ''])
      : stacks.flatMap((id) => ['[[stacks]]', `  id = "${id}"`, ''])),
  ].join('\n')
  const files: LayerFile[] = [{path: `${root}/buildpack.toml`, content: toml}]
  if (!b.order) {
    files.push({path: `${root}/bin/detect`, content: '#!/usr/bin/env bash\nexit 0\n', mode: 0o755})
    files.push({path: `${root}/bin/build`, content: `#!/usr/bin/env bash\necho "${b.id} ${b.version}"\n`, mode: 0o755})
  }
  return {seed: `buildpack ${b.id}@${b.version}`, size, dir: `${root}/lib`, files}
}

/** Writes a bundle directory: bundle.yaml and a README.txt (other bundle files travel too). */
export async function writeBundleDir(bundle: Bundle, dir: string): Promise<string> {
  await mkdir(dir, {recursive: true})
  await writeFile(join(dir, 'bundle.yaml'), serializeBundle(bundle))
  await writeFile(join(dir, 'README.txt'), [
    `${bundle.metadata.name} ${bundle.metadata.version} (kpack ${bundle.kpack.version})`,
    '',
    'A kpi bundle: bundle.yaml lists every image of this platform release, pinned by digest.',
    'Other files in this directory travel with the bundle through kpi relocate and the air-gap archive.',
    '',
  ].join('\n'))
  return dir
}
