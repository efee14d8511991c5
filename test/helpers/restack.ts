/**
 * An image like another but whose config says another stack id (label io.buildpacks.stack.id):
 * same layers, new configs, new manifests (and index), pushed beside the original. What a
 * platform team gets when it pairs a run image with the build image of another stack.
 */
import {Readable} from 'node:stream'
import {sha256Digest} from '../../src/oci/digest.js'
import {parseReference} from '../../src/oci/reference.js'
import type {Descriptor, ImageIndex, ImageManifest, RegistryClient, Repo} from '../../src/oci/types.js'

function encode(value: unknown): {digest: string; size: number; bytes: Buffer} {
  const bytes = Buffer.from(JSON.stringify(value))
  return {digest: sha256Digest(bytes), size: bytes.length, bytes}
}

async function restackManifest(client: RegistryClient, repo: Repo, digest: string, stackId: string): Promise<Descriptor> {
  const m = await client.getManifest(repo, digest)
  const manifest = JSON.parse(m.bytes.toString('utf8')) as ImageManifest
  const configStream = await client.getBlob(repo, manifest.config.digest, manifest.config.size)
  const chunks: Buffer[] = []
  for await (const c of configStream) chunks.push(c as Buffer)
  const config = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {config?: {Labels?: Record<string, string>}}
  config.config = {...config.config, Labels: {...config.config?.Labels, 'io.buildpacks.stack.id': stackId}}
  const cfg = encode(config)
  await client.putBlob(repo, cfg.digest, cfg.size, () => Readable.from([cfg.bytes]))
  const next = {...manifest, config: {...manifest.config, digest: cfg.digest, size: cfg.size}}
  const bytes = Buffer.from(JSON.stringify(next))
  const d = await client.putManifest(repo, sha256Digest(bytes), bytes, m.mediaType)
  return {mediaType: m.mediaType, digest: d, size: bytes.length}
}

/** Pushes `ref` restacked to `stackId` into the same repository; returns `repo@digest`. */
export async function restackedImage(client: RegistryClient, ref: string, stackId: string): Promise<string> {
  const p = parseReference(ref)
  const repo: Repo = {registry: p.registry, repository: p.repository}
  const top = await client.getManifest(repo, p.digest!)
  const parsed = JSON.parse(top.bytes.toString('utf8')) as ImageIndex & ImageManifest
  if (!parsed.manifests) return `${p.registry}/${p.repository}@${(await restackManifest(client, repo, p.digest!, stackId)).digest}`
  const manifests: Descriptor[] = []
  for (const child of parsed.manifests) manifests.push({...child, ...(await restackManifest(client, repo, child.digest, stackId))})
  const bytes = Buffer.from(JSON.stringify({...parsed, manifests}))
  const d = await client.putManifest(repo, sha256Digest(bytes), bytes, top.mediaType)
  return `${p.registry}/${p.repository}@${d}`
}
