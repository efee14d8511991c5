/**
 * Checks an archive end to end: its structure (openArchive), the digest of every blob and
 * manifest, and that every manifest's blobs and children are in the archive or declared external
 * (a delta's base). Each damaged or missing digest is reported with the images that use it.
 */
import {finished} from 'node:stream/promises'
import {isKpiError} from '../errors.js'
import {algorithmOf, digestOf, doneWith, type ImageIndex, type ImageManifest, isIndexMediaType} from '../oci/index.js'
import {noProgress, type OnEvent} from '../progress/events.js'
import {MAX_MANIFEST_BYTES, openArchive} from './reader.js'
import {blobMember, type Toc} from './toc.js'

export interface VerifyProblem {
  digest: string
  problem: 'damaged' | 'missing'
  message: string
  /** bundle paths of the images that use the digest */
  images: string[]
}

export interface VerifyResult {
  ok: boolean
  file: string
  bundle: {name: string; version: string}
  checked: {manifests: number; blobs: number; bytes: number}
  problems: VerifyProblem[]
}

const foreign = (mediaType: string, urls?: string[]) => /foreign|nondistributable/.test(mediaType) && (urls?.length ?? 0) > 0

/** digest -> bundle paths of the images using it */
export function usersOf(toc: Toc): Map<string, string[]> {
  const users = new Map<string, string[]>()
  const add = (d: string, path: string) => {
    const l = users.get(d) ?? []
    if (!l.includes(path)) l.push(path)
    users.set(d, l)
  }
  for (const img of toc.images) {
    for (const m of img.manifests) add(m, img.path)
    for (const b of img.blobs) add(b.digest, img.path)
  }
  return users
}

export async function verifyArchive(file: string, opts: {onEvent?: OnEvent} = {}): Promise<VerifyResult> {
  const onEvent = opts.onEvent ?? noProgress
  const a = await openArchive(file)
  try {
    const users = usersOf(a.toc)
    const problems: VerifyProblem[] = []
    const report = (digest: string, problem: VerifyProblem['problem'], message: string) =>
      problems.push({digest, problem, message, images: users.get(digest) ?? []})
    const external = new Set(a.toc.external.map((b) => b.digest))
    const manifestDigests = new Set(a.toc.manifests.map((m) => m.digest))
    const checked = {manifests: 0, blobs: 0, bytes: 0}

    onEvent({type: 'phase', phase: 'verify', message: `${a.toc.manifests.length} manifests, ${a.toc.blobs.length} blobs in ${file}`})
    for (const m of a.toc.manifests) {
      const bytes = await a.readMember(blobMember(m.digest), MAX_MANIFEST_BYTES)
      checked.manifests++
      checked.bytes += bytes.length
      if (digestOf(bytes, algorithmOf(m.digest)) !== m.digest) {
        report(m.digest, 'damaged', `manifest ${m.digest} does not match its digest`)
        continue
      }
      let parsed: ImageManifest & ImageIndex
      try {
        parsed = JSON.parse(bytes.toString('utf8')) as ImageManifest & ImageIndex
      } catch {
        report(m.digest, 'damaged', `manifest ${m.digest} is not valid JSON`)
        continue
      }
      if (isIndexMediaType(m.mediaType) || Array.isArray(parsed.manifests)) {
        for (const c of parsed.manifests ?? []) {
          if (!manifestDigests.has(c.digest)) report(c.digest, 'missing', `manifest ${c.digest}, listed by index ${m.digest}, is not in the archive`)
        }
      } else {
        for (const d of [parsed.config, ...(parsed.layers ?? [])]) {
          if (!d?.digest || foreign(d.mediaType, d.urls)) continue
          if (!a.hasBlob(d.digest) && !external.has(d.digest)) {
            report(d.digest, 'missing', `blob ${d.digest}, used by manifest ${m.digest}, is neither in the archive nor declared external`)
          }
        }
      }
    }
    for (const b of a.toc.blobs) {
      try {
        const s = a.blobStream(b.digest)
        // hashed on the way out of the stream: each chunk's memory can be read into again
        s.on('data', doneWith)
        await finished(s)
      } catch (e) {
        const why = isKpiError(e) ? e.message : String(e)
        report(b.digest, 'damaged', `blob ${b.digest} is damaged: ${why}`)
      }
      checked.blobs++
      checked.bytes += b.size
    }
    // a digest reported twice (listed by two manifests) counts once
    const seen = new Set<string>()
    const unique = problems.filter((p) => {
      const k = `${p.problem}:${p.digest}`
      if (seen.has(k)) return false
      seen.add(k)
      return true
    })
    return {ok: unique.length === 0, file, bundle: {name: a.toc.bundle.name, version: a.toc.bundle.version}, checked, problems: unique}
  } finally {
    await a.close()
  }
}
