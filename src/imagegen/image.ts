/**
 * Images and indexes from layer specs: layers first, then the config, then the manifest (the
 * order a registry would need too). JSON is built with a fixed key order so the bytes, and so
 * the digests, depend only on the spec.
 */
import {type Descriptor, type ImageIndex, type ImageManifest, MediaTypes, type Platform} from '../oci/index.js'
import {writeBlob} from './layout.js'
import {writeLayer, type LayerBlob, type LayerOptions, type LayerSpec} from './layer.js'

export const FIXED_CREATED = '1980-01-01T00:00:01Z'

export interface ImageConfigSpec {
  User?: string
  Env?: string[]
  Entrypoint?: string[]
  Cmd?: string[]
  WorkingDir?: string
  Labels?: Record<string, string>
}

export interface ImageSpec {
  /** default linux/amd64 */
  platform?: Platform
  layers: LayerSpec[]
  config?: ImageConfigSpec
  /** labels computed from the written layers (a buildpackage names its layers' diff_ids) */
  labels?: (layers: LayerBlob[]) => Record<string, string>
  /** manifest annotations */
  annotations?: Record<string, string>
}

export interface GeneratedImage {
  /** the manifest's descriptor, with its platform */
  descriptor: Descriptor
  manifest: ImageManifest
  config: Descriptor
  layers: LayerBlob[]
}

export interface GeneratedIndex {
  descriptor: Descriptor
  index: ImageIndex
  children: GeneratedImage[]
}

/** Memoizes layer writes within one generation so a layer shared by many images is written once. */
export type LayerWriter = (spec: LayerSpec) => Promise<LayerBlob>

export function layerWriter(layoutDir: string, opts: LayerOptions = {}): LayerWriter {
  const memo = new Map<string, Promise<LayerBlob>>()
  return (spec) => {
    const key = JSON.stringify(spec)
    let p = memo.get(key)
    if (!p) {
      p = writeLayer(layoutDir, spec, opts)
      memo.set(key, p)
    }
    return p
  }
}

const sorted = (o: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))

/** Writes an image (layers, config, manifest) into the layout; does not tag it. */
export async function generateImage(
  layoutDir: string,
  spec: ImageSpec,
  opts: LayerOptions & {writeLayer?: LayerWriter} = {},
): Promise<GeneratedImage> {
  const write = opts.writeLayer ?? layerWriter(layoutDir, opts)
  const platform: Platform = spec.platform ?? {architecture: 'amd64', os: 'linux'}
  const layers: LayerBlob[] = []
  for (const l of spec.layers) layers.push(await write(l)) // one at a time: two cores are shared
  const c = spec.config ?? {}
  const labels = {...(c.Labels ?? {}), ...(spec.labels ? spec.labels(layers) : {})}
  const imageConfig: Record<string, unknown> = {}
  if (c.User !== undefined) imageConfig.User = c.User
  if (c.Env) imageConfig.Env = c.Env
  if (c.Entrypoint) imageConfig.Entrypoint = c.Entrypoint
  if (c.Cmd) imageConfig.Cmd = c.Cmd
  if (c.WorkingDir !== undefined) imageConfig.WorkingDir = c.WorkingDir
  if (Object.keys(labels).length) imageConfig.Labels = sorted(labels)
  const config = {
    created: FIXED_CREATED,
    architecture: platform.architecture,
    ...(platform.variant ? {variant: platform.variant} : {}),
    os: platform.os,
    config: imageConfig,
    rootfs: {type: 'layers', diff_ids: layers.map((l) => l.diffId)},
    history: spec.layers.map((l) => ({created: FIXED_CREATED, created_by: `kpi imagegen: ${l.seed}`})),
  }
  const configDesc = await writeBlob(layoutDir, Buffer.from(JSON.stringify(config)), MediaTypes.ociConfig)
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: configDesc,
    layers: layers.map((l) => ({mediaType: l.mediaType, digest: l.digest, size: l.size})),
    ...(spec.annotations && Object.keys(spec.annotations).length ? {annotations: sorted(spec.annotations)} : {}),
  }
  const d = await writeBlob(layoutDir, Buffer.from(JSON.stringify(manifest)), MediaTypes.ociManifest)
  return {descriptor: {...d, platform}, manifest, config: configDesc, layers}
}

/** Writes an index over already generated images (each keeps its platform). */
export async function generateIndex(
  layoutDir: string,
  children: GeneratedImage[],
  annotations?: Record<string, string>,
): Promise<GeneratedIndex> {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: children.map((c) => ({
      mediaType: c.descriptor.mediaType,
      digest: c.descriptor.digest,
      size: c.descriptor.size,
      ...(c.descriptor.platform ? {platform: c.descriptor.platform} : {}),
    })),
    ...(annotations && Object.keys(annotations).length ? {annotations: sorted(annotations)} : {}),
  }
  const descriptor = await writeBlob(layoutDir, Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex)
  return {descriptor, index, children}
}
