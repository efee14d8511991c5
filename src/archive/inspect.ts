/** What `kpi tar inspect` tells about an archive, read from its table of contents only. */
import {stat} from 'node:fs/promises'
import {openArchive} from './reader.js'
import type {Toc} from './toc.js'

export interface ArchiveSummary {
  file: string
  /** the archive's files: one, or its parts */
  files: string[]
  /** size of the archive on disk */
  bytes: number
  bundle: Toc['bundle']
  images: Array<{path: string; ref: string; name: string; digest: string; mediaType: string; platforms: string[]; bytes: number; blobs: number}>
  manifests: number
  blobs: number
  external: number
  totalBytes: number
  uniqueBytes: number
  archivedBytes: number
  since?: Toc['since']
  createdBy: string
}

export async function inspectArchive(file: string): Promise<ArchiveSummary> {
  const a = await openArchive(file)
  try {
    const {toc} = a
    let bytes = 0
    for (const f of a.files) bytes += (await stat(f)).size
    const out: ArchiveSummary = {
      file,
      files: a.files,
      bytes,
      bundle: toc.bundle,
      images: toc.images.map((i) => ({path: i.path, ref: i.ref, name: i.name, digest: i.digest, mediaType: i.mediaType, platforms: i.platforms, bytes: i.bytes, blobs: i.blobs.length})),
      manifests: toc.manifests.length,
      blobs: toc.blobs.length,
      external: toc.external.length,
      totalBytes: toc.totalBytes,
      uniqueBytes: toc.uniqueBytes,
      archivedBytes: toc.archivedBytes,
      createdBy: toc.createdBy,
    }
    if (toc.since) out.since = toc.since
    return out
  } finally {
    await a.close()
  }
}
