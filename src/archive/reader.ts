/**
 * Opens an archive for reading: one pass over the tar headers (layers are not read), strict
 * checks of every member, then the table of contents, index.json and the bundle. Blobs are served
 * straight from the file through a digest-verifying stream; into a registry, which checks every
 * blob's digest as its upload closes and refuses a wrong one, the stream checks the length only
 * (hashing gigabytes twice cost about a CPU-second per GiB). Everything wrong with the archive's
 * structure is refused here, before anything is pushed.
 */
import type {Readable} from 'node:stream'
import {parseBundle} from '../bundle/load.js'
import type {Bundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import {algorithmOf, type Descriptor, digestOf, DigestVerifier, type FetchedManifest, type ImageIndex, isDigest, verifiedFrom} from '../oci/index.js'
import {decodeUtf8} from '../textfile.js'
import type {ImageSource} from '../relocate/endpoints.js'
import {PartSet, resolveParts} from './parts.js'
import {scanTar, type Member} from './scan.js'
import {
  BUNDLE_PREFIX, INDEX_MEMBER, LAYOUT_MEMBER, TOC_FORMAT, TOC_MEMBER, blobMember,
  type Toc, type TocBlob, type TocManifest,
} from './toc.js'

/** Manifests bigger than this are refused (the OCI client and containerd use 4 MiB too). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const MAX_TOC_BYTES = 64 * 1024 * 1024
const MAX_FILE_BYTES = 16 * 1024 * 1024

export interface OpenedArchive {
  /** the name given */
  file: string
  /** its files: one, or the parts in order */
  files: string[]
  toc: Toc
  index: ImageIndex
  bundle: Bundle
  /** the bundle directory's files as archived, bundle.yaml among them */
  bundleFiles: Array<{path: string; bytes: Buffer}>
  /** the archive as a relocation source (repositories are ignored: content is by digest) */
  source: ImageSource
  /** blobs the images need that the archive lacks (the base of a delta) */
  missing: TocBlob[]
  members: ReadonlyMap<string, Member>
  hasBlob(digest: string): boolean
  /** a blob's bytes, verified against its digest as they stream (`digest: false`: its length only) */
  blobStream(digest: string, opts?: {digest?: boolean}): Readable
  /** a member's raw bytes, unverified (small members only) */
  readMember(name: string, maxBytes: number): Promise<Buffer>
  close(): Promise<void>
}

const damaged = 'the archive is damaged or was not written by kpi; get a fresh copy from where it was made'

export async function openArchive(file: string): Promise<OpenedArchive> {
  const {files} = await resolveParts(file)
  const parts = await PartSet.open(files)
  try {
    return await readArchive(file, files, parts)
  } catch (e) {
    await parts.close()
    throw e
  }
}

async function readArchive(file: string, files: string[], parts: PartSet): Promise<OpenedArchive> {
  const scan = await scanTar(parts, file)
  const members = scan.byName
  const bad = (message: string, hint = damaged) => new KpiError('input', `archive ${file}: ${message}`, {hint})

  const readMember = async (name: string, maxBytes: number): Promise<Buffer> => {
    const m = members.get(name)
    if (!m) throw bad(`it has no member ${name}`)
    if (m.size > maxBytes) throw bad(`member ${name} is ${m.size} bytes, more than the ${maxBytes} allowed`)
    return parts.read(m.offset, m.size)
  }
  const json = async <T>(name: string, maxBytes: number): Promise<T> => {
    const bytes = await readMember(name, maxBytes)
    try {
      return JSON.parse(bytes.toString('utf8')) as T
    } catch {
      throw bad(`${name} is not valid JSON`)
    }
  }

  if (!members.has(TOC_MEMBER)) {
    throw bad(`it has no ${TOC_MEMBER}`, `only archives written by kpi relocate --to-tar can be imported; ${members.has(INDEX_MEMBER) ? 'this looks like a plain OCI archive: use --from-oci-layout on its extracted directory' : damaged}`)
  }
  if (!members.has(INDEX_MEMBER)) throw bad(`it has no ${INDEX_MEMBER}`)
  if (!members.has(LAYOUT_MEMBER)) throw bad(`it has no ${LAYOUT_MEMBER}`)
  const toc = await json<Toc>(TOC_MEMBER, MAX_TOC_BYTES)
  if (toc?.format !== TOC_FORMAT) {
    throw bad(`${TOC_MEMBER} has format "${String(toc?.format)}", not ${TOC_FORMAT}`, 'use a kpi version that wrote this archive, or re-create the archive')
  }
  if (!Array.isArray(toc.images) || !Array.isArray(toc.manifests) || !Array.isArray(toc.blobs) || !Array.isArray(toc.external) || !toc.bundle) {
    throw bad(`${TOC_MEMBER} lacks images, manifests, blobs, external or bundle`)
  }
  const index = await json<ImageIndex>(INDEX_MEMBER, MAX_TOC_BYTES)
  if (!Array.isArray(index?.manifests)) throw bad(`${INDEX_MEMBER} has no manifests list`)

  // every digest the toc names must be well formed before it becomes a member name
  const checkDigest = (d: unknown, where: string) => {
    if (typeof d !== 'string' || !isDigest(d)) throw bad(`${where} names an invalid digest "${String(d)}"`)
  }
  const manifests = new Map<string, TocManifest>()
  for (const m of toc.manifests) {
    checkDigest(m.digest, `${TOC_MEMBER} manifest`)
    const member = members.get(blobMember(m.digest))
    if (!member) throw bad(`manifest ${m.digest} is listed but not in the archive`)
    if (member.size > MAX_MANIFEST_BYTES) {
      throw bad(`manifest ${m.digest} is ${member.size} bytes, more than the ${MAX_MANIFEST_BYTES} bytes a manifest may have`)
    }
    if (member.size !== m.size) throw bad(`manifest ${m.digest} is ${member.size} bytes, but the toc says ${m.size}`)
    manifests.set(m.digest, m)
  }
  for (const d of index.manifests) {
    checkDigest(d?.digest, INDEX_MEMBER)
    if (!manifests.has(d.digest)) throw bad(`${INDEX_MEMBER} lists ${d.digest}, which the toc does not list as a manifest`)
  }
  const blobs = new Map<string, TocBlob>()
  for (const b of toc.blobs) {
    checkDigest(b.digest, `${TOC_MEMBER} blob`)
    const member = members.get(blobMember(b.digest))
    if (!member) throw bad(`blob ${b.digest} is listed but not in the archive`)
    if (member.size !== b.size) throw bad(`blob ${b.digest} is ${member.size} bytes, but the toc says ${b.size}`)
    blobs.set(b.digest, b)
  }
  const external = new Map<string, TocBlob>()
  for (const b of toc.external) {
    checkDigest(b.digest, `${TOC_MEMBER} external blob`)
    external.set(b.digest, b)
  }
  for (const img of toc.images) {
    checkDigest(img.digest, `${TOC_MEMBER} image ${img.path}`)
    if (!manifests.has(img.digest)) throw bad(`image ${img.path} (${img.digest}) has no manifest in the archive`)
  }

  // the bundle, its files checked against the toc
  const bundleFiles: Array<{path: string; bytes: Buffer}> = []
  for (const f of toc.bundle.files ?? []) {
    const bytes = await readMember(BUNDLE_PREFIX + f.path, MAX_FILE_BYTES)
    if (digestOf(bytes) !== f.digest) throw new KpiError('integrity', `archive ${file}: bundle file ${f.path} does not match its digest in the toc`, {hint: damaged})
    bundleFiles.push({path: f.path, bytes})
  }
  const yaml = bundleFiles.find((f) => f.path === 'bundle.yaml')
  if (!yaml) throw bad(`it has no ${BUNDLE_PREFIX}bundle.yaml`)
  const bundle = parseBundle(decodeUtf8(yaml.bytes, `${file}:${BUNDLE_PREFIX}bundle.yaml`, 'bundle file'), `${file}:${BUNDLE_PREFIX}bundle.yaml`)

  const blobStream = (digest: string, opts: {digest?: boolean} = {}): Readable => {
    const m = members.get(blobMember(digest))
    if (!m) throw new KpiError('not-found', `archive ${file} does not hold blob ${digest}`)
    return verifiedFrom(parts.stream(m.offset, m.size), new DigestVerifier(digest, {size: m.size, label: `blob ${digest} in archive ${file}`, digest: opts.digest}))
  }

  const source: ImageSource = {
    name: `archive ${file}`,
    damagedHint: `the archive is damaged: kpi tar verify ${file} names every damaged blob and its images; get a fresh copy from where it was made`,
    async getManifest(_repo, reference): Promise<FetchedManifest> {
      const t = manifests.get(reference)
      if (!t) throw new KpiError('not-found', `archive ${file} does not hold manifest ${reference}`, {hint: isDigest(reference) ? damaged : 'archives hold images by digest'})
      const bytes = await readMember(blobMember(reference), MAX_MANIFEST_BYTES)
      const got = digestOf(bytes, algorithmOf(reference))
      if (got !== reference) {
        throw new KpiError('integrity', `archive ${file}: manifest ${reference} is damaged (its content hashes to ${got})`, {hint: damaged})
      }
      return {bytes, mediaType: t.mediaType, digest: reference}
    },
    async getBlob(_repo, digest, size, opts) {
      if (!members.has(blobMember(digest))) {
        const since = toc.since ? `${toc.since.name} ${toc.since.version}` : 'its base version'
        if (external.has(digest)) {
          throw new KpiError('not-found', `blob ${digest} is not in delta archive ${file}: ${since} holds it`, {hint: `relocate ${since} to the destination first`})
        }
        throw new KpiError('not-found', `archive ${file} does not hold blob ${digest}`, {hint: damaged})
      }
      const m = members.get(blobMember(digest))!
      if (size !== undefined && m.size !== size) {
        throw new KpiError('integrity', `archive ${file}: blob ${digest} is ${m.size} bytes, its manifest says ${size}`, {hint: damaged})
      }
      return blobStream(digest, {digest: opts?.verify})
    },
    async referrers(_repo, digest): Promise<Descriptor[]> {
      return toc.manifests
        .filter((m) => m.subject === digest)
        .map((m) => ({mediaType: m.mediaType, digest: m.digest, size: m.size, ...(m.artifactType ? {artifactType: m.artifactType} : {})}))
    },
  }

  return {
    file,
    files,
    toc,
    index,
    bundle,
    bundleFiles,
    source,
    missing: [...external.values()],
    members,
    hasBlob: (d) => members.has(blobMember(d)),
    blobStream,
    readMember,
    close: () => parts.close(),
  }
}
