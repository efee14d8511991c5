/**
 * A bundle directory as an OCI image, as imgpkg keeps its bundles: one gzip'd tar layer holding
 * bundle.yaml and the directory's other files (the same files, secrets left out, that travel in an
 * air-gap archive), and an image config labelled `dev.kpi.bundle`. Same files, same bytes, same
 * digest: the tar has fixed times and owners. An ordinary image, so any registry stores it and
 * kpi relocates it byte for byte like any other image.
 */
import {mkdir, writeFile} from 'node:fs/promises'
import {dirname, join, normalize, sep} from 'node:path'
import {gunzipSync, gzipSync} from 'node:zlib'
import {BLOCK, END_OF_ARCHIVE, entryHeader, isZeroBlock, paddedSize, paddingBytes, parseHeader, parsePax} from '../archive/tar.js'
import {byCodeUnit} from '../canonical.js'
import {KpiError} from '../errors.js'
import {pushBlobBytes, readBlobBytes, digestOf, formatImage, MediaTypes, type ImageManifest, type RegistryClient, type Repo} from '../oci/index.js'
import {BUNDLE_FILE} from './load.js'
import type {Bundle, BundleFile} from './types.js'

/** The config label that marks a bundle image; its value is the bundle apiVersion. */
export const BUNDLE_LABEL = 'dev.kpi.bundle'
const MAX_LAYER = 80 * 1024 * 1024

export interface BundleArtifact {
  manifest: Buffer
  config: Buffer
  layer: Buffer
  digest: string
}

function tarOf(files: BundleFile[]): Buffer {
  const parts: Buffer[] = []
  for (const f of [...files].sort((a, b) => byCodeUnit(a.path, b.path))) {
    parts.push(entryHeader(f.path, f.bytes.length), f.bytes, paddingBytes(f.bytes.length))
  }
  parts.push(END_OF_ARCHIVE)
  return Buffer.concat(parts)
}

export function bundleArtifact(bundle: Bundle, files: BundleFile[]): BundleArtifact {
  const tar = tarOf(files)
  // level and header fixed (no name, no time): the same files give the same layer digest
  const layer = gzipSync(tar, {level: 9})
  const config = Buffer.from(JSON.stringify({
    architecture: 'unknown',
    os: 'unknown',
    config: {Labels: {[BUNDLE_LABEL]: bundle.apiVersion, 'org.opencontainers.image.title': bundle.metadata.name, 'org.opencontainers.image.version': bundle.metadata.version}},
    rootfs: {type: 'layers', diff_ids: [digestOf(tar)]},
  }))
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: {mediaType: MediaTypes.ociConfig, digest: digestOf(config), size: config.length},
    layers: [{mediaType: MediaTypes.ociLayerGzip, digest: digestOf(layer), size: layer.length}],
    annotations: {'org.opencontainers.image.title': bundle.metadata.name, 'org.opencontainers.image.version': bundle.metadata.version},
  }
  const manifest = Buffer.from(JSON.stringify(m))
  return {manifest, config, layer, digest: digestOf(manifest)}
}

/** Pushes blobs, then the manifest by digest, then under `tag`. Returns the manifest digest. */
export async function pushBundleArtifact(client: RegistryClient, repo: Repo, tag: string, a: BundleArtifact): Promise<string> {
  for (const blob of [a.layer, a.config]) await pushBlobBytes(client, repo, blob)
  await client.putManifest(repo, a.digest, a.manifest, MediaTypes.ociManifest)
  await client.putManifest(repo, tag, a.manifest, MediaTypes.ociManifest)
  return a.digest
}

/**
 * Fetches a bundle image and writes its files into `dir` (which then holds bundle.yaml). Refuses
 * an image that is not a bundle, and any member that is not a plain file inside the directory.
 */
const parseJson = <T>(bytes: Buffer, bad: () => KpiError): T => {
  try {
    return JSON.parse(bytes.toString('utf8')) as T
  } catch {
    throw bad()
  }
}

/** The bundle layer unpacked, at most MAX_LAYER bytes of it: a gzip bomb is refused, not unpacked. */
function gunzipLayer(gz: Buffer, notBundle: (why: string) => KpiError): Buffer {
  try {
    return gunzipSync(gz, {maxOutputLength: MAX_LAYER})
  } catch (e) {
    const tooBig = (e as {code?: string}).code === 'ERR_BUFFER_TOO_LARGE'
    throw notBundle(tooBig ? `its layer unpacks to more than ${MAX_LAYER} bytes` : 'its layer is not gzip')
  }
}

export async function pullBundleArtifact(client: RegistryClient, repo: Repo, reference: string, dir: string): Promise<{digest: string; files: string[]}> {
  const where = formatImage(repo, reference)
  const notBundle = (why: string) => new KpiError('input', `${where} is not a kpi bundle image: ${why}`, {hint: 'push one with kpi bundle push DIR --to-repo REPO'})
  const fetched = await client.getManifest(repo, reference)
  const m = parseJson<Partial<ImageManifest>>(fetched.bytes, () => notBundle('its manifest is not JSON'))
  if (!m.config || !Array.isArray(m.layers)) throw notBundle(`its media type is ${fetched.mediaType}`)
  const config = parseJson<{config?: {Labels?: Record<string, string>}}>(await readBlobBytes(client, repo, m.config, MAX_LAYER, where), () => notBundle('its config is not JSON'))
  if (!config.config?.Labels?.[BUNDLE_LABEL]) throw notBundle(`its config has no ${BUNDLE_LABEL} label`)
  if (m.layers.length !== 1) throw notBundle(`it has ${m.layers.length} layers, a bundle image has one`)
  const layer = m.layers[0]!
  if (layer.size > MAX_LAYER) throw notBundle(`its layer is ${layer.size} bytes`)
  const tar = gunzipLayer(await readBlobBytes(client, repo, layer, MAX_LAYER, where), notBundle)
  const files: string[] = []
  let pax: Record<string, string> = {}
  for (let off = 0; off + BLOCK <= tar.length;) {
    const block = tar.subarray(off, off + BLOCK)
    if (isZeroBlock(block)) break
    const h = parseHeader(block)
    if (!h || Number.isNaN(h.size)) throw notBundle('its layer is not a tar file')
    if (off + BLOCK + h.size > tar.length) throw notBundle(`its layer ends inside member ${h.name}`)
    const data = tar.subarray(off + BLOCK, off + BLOCK + h.size)
    off += BLOCK + paddedSize(h.size)
    if (h.type === 'x') {
      try {
        pax = parsePax(data)
      } catch {
        throw notBundle(`the extended header before member ${h.name} is malformed`)
      }
      continue
    }
    const name = pax.path ?? h.name
    pax = {}
    if (h.type === '5') continue
    const rel = normalize(name)
    if (h.type !== '0' || rel.startsWith('..') || rel.startsWith(sep) || rel.includes(`..${sep}`)) throw notBundle(`member ${name} is not a file inside the bundle`)
    const full = join(dir, rel)
    await mkdir(dirname(full), {recursive: true})
    await writeFile(full, data)
    files.push(rel.split(sep).join('/'))
  }
  if (!files.includes(BUNDLE_FILE)) throw notBundle(`it holds no ${BUNDLE_FILE}`)
  return {digest: fetched.digest, files}
}
