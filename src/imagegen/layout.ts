/**
 * Writing an OCI image layout directory (oci-layout, index.json, blobs/sha256/<hex>): small blobs
 * from memory, tagged entries in index.json. Large blobs are streamed by layer.ts.
 */
import {createHash, randomUUID} from 'node:crypto'
import {mkdir, readFile, rename, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {Descriptor} from '../oci/index.js'

export const REF_NAME = 'org.opencontainers.image.ref.name'
export const KPI_REPOSITORY = 'dev.kpi.repository'
export const KPI_TAG = 'dev.kpi.tag'

export const blobDir = (layoutDir: string): string => join(layoutDir, 'blobs', 'sha256')
export const blobPath = (layoutDir: string, digest: string): string => join(blobDir(layoutDir), digest.replace(/^sha256:/, ''))

/** Creates the layout skeleton if missing; leaves an existing index.json alone. */
export async function ensureLayout(layoutDir: string): Promise<void> {
  await mkdir(blobDir(layoutDir), {recursive: true})
  await writeFile(join(layoutDir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
  const index = join(layoutDir, 'index.json')
  if (!(await exists(index))) await writeAtomic(index, Buffer.from(JSON.stringify({schemaVersion: 2, manifests: []})))
}

export async function exists(path: string, size?: number): Promise<boolean> {
  try {
    const st = await stat(path)
    return size === undefined || st.size === size
  } catch {
    return false
  }
}

export async function writeAtomic(path: string, bytes: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${randomUUID()}`
  await writeFile(tmp, bytes)
  await rename(tmp, path)
}

/** Writes a small blob (config, manifest) unless present; returns its descriptor. */
export async function writeBlob(layoutDir: string, bytes: Buffer, mediaType: string): Promise<Descriptor> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  const path = blobPath(layoutDir, digest)
  if (!(await exists(path, bytes.length))) await writeAtomic(path, bytes)
  return {mediaType, digest, size: bytes.length}
}

export interface LayoutTag {
  /** the manifest or index to name */
  descriptor: Descriptor
  /** repository it belongs to, e.g. kpack/controller */
  repository: string
  tag: string
}

/**
 * The ref.name a tagged image gets in index.json: `<repository>:<tag>`, unique in a layout that
 * holds many repositories (a bare tag like 0.16.1 would collide). skopeo reads it as
 * `oci:<dir>:<repository>:<tag>`.
 */
export const refName = (repository: string, tag: string): string => `${repository}:${tag}`

/**
 * Adds or replaces tagged entries in index.json (by ref.name), keeping the others, sorted by
 * ref.name so the file is deterministic. Not safe against concurrent writers of one layout.
 */
export async function tagImages(layoutDir: string, tags: LayoutTag[]): Promise<void> {
  await ensureLayout(layoutDir)
  const path = join(layoutDir, 'index.json')
  const index = JSON.parse(await readFile(path, 'utf8')) as {schemaVersion: 2; mediaType?: string; manifests: Descriptor[]}
  const byName = new Map<string, Descriptor>()
  for (const d of index.manifests) byName.set(d.annotations?.[REF_NAME] ?? `\0${d.digest}`, d)
  for (const t of tags) {
    const name = refName(t.repository, t.tag)
    const {mediaType, digest, size} = t.descriptor
    byName.set(name, {mediaType, digest, size, annotations: {[REF_NAME]: name, [KPI_REPOSITORY]: t.repository, [KPI_TAG]: t.tag}})
  }
  const manifests = [...byName.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, d]) => d)
  const out = {schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests}
  await writeAtomic(path, Buffer.from(JSON.stringify(out, null, 2) + '\n'))
}
