/**
 * An image's config (labels, env, platform), read through the registry client: an index is
 * narrowed to one platform first (linux/amd64 unless asked otherwise, as go-containerregistry's
 * remote.Image does), so callers can ask for labels of whatever a reference names.
 */
import {KpiError} from '../errors.js'
import {readBlobBytes} from './blob-bytes.js'
import {formatImage} from './reference.js'
import {isIndexMediaType, type ImageIndex, type ImageManifest, type RegistryClient, type Repo} from './types.js'

/** Configs are small; a bigger one is refused rather than held in memory. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024

export interface ImageConfig {
  architecture?: string
  os?: string
  config?: {Labels?: Record<string, string> | null; Env?: string[] | null}
}

export async function readImageConfig(client: RegistryClient, repo: Repo, reference: string, platform = {os: 'linux', architecture: 'amd64'}): Promise<ImageConfig> {
  const where = formatImage(repo, reference)
  let m = await client.getManifest(repo, reference)
  if (isIndexMediaType(m.mediaType)) {
    const index = JSON.parse(m.bytes.toString('utf8')) as ImageIndex
    const child = index.manifests.find((d) => d.platform?.os === platform.os && d.platform?.architecture === platform.architecture)
      ?? index.manifests.find((d) => d.platform?.os === platform.os)
    if (!child) throw new KpiError('input', `${where} has no ${platform.os}/${platform.architecture} image in its index`)
    m = await client.getManifest(repo, child.digest)
  }
  const manifest = JSON.parse(m.bytes.toString('utf8')) as ImageManifest
  const cfg = manifest.config
  if (!cfg?.digest) throw new KpiError('input', `${where} is not an image (its manifest has no config)`)
  const bytes = await readBlobBytes(client, repo, cfg, MAX_CONFIG_BYTES, `${where}: image config`)
  try {
    return JSON.parse(bytes.toString('utf8')) as ImageConfig
  } catch {
    throw new KpiError('input', `${where}: the image config is not JSON`)
  }
}
