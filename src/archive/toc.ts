/**
 * What an archive holds and how it is laid out. The archive is a standard OCI image layout in a
 * tar (skopeo's `oci-archive:`), members in this order:
 *   oci-layout
 *   blobs/sha256/<hex>      every layer and config once, in blobOrder(plan)
 *   blobs/sha256/<hex>      every manifest and index once, children before parents
 *   index.json              one entry per root image, annotated with its reference as the name
 *   kpi/bundle/<path>       the bundle directory's files (bundle.yaml first), never credentials
 *   kpi/toc.json            this table of contents
 * A delta archive (`--since`) leaves out the blobs its base version already has; the toc lists
 * them as `external`.
 */
import {digestHex, type Platform} from '../oci/index.js'

export const TOC_FORMAT = 'kpi.dev/archive/v1'
export const LAYOUT_MEMBER = 'oci-layout'
export const INDEX_MEMBER = 'index.json'
export const TOC_MEMBER = 'kpi/toc.json'
export const BUNDLE_PREFIX = 'kpi/bundle/'
export const LAYOUT_BYTES = Buffer.from('{"imageLayoutVersion":"1.0.0"}')
export const REF_NAME = 'org.opencontainers.image.ref.name'

/** `sha256:<hex>` -> `blobs/sha256/<hex>` */
export const blobMember = (digest: string): string => `blobs/${digest.slice(0, digest.indexOf(':'))}/${digestHex(digest)}`

/** `blobs/sha256/<hex>` -> `sha256:<hex>`, or undefined for other members */
export function memberDigest(name: string): string | undefined {
  const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name)
  return m ? `${m[1]}:${m[2]}` : undefined
}

export interface TocBlob {
  digest: string
  size: number
  mediaType: string
}

export interface TocManifest {
  digest: string
  mediaType: string
  size: number
  /** the manifest this one refers to (signatures, SBOMs) */
  subject?: string
  artifactType?: string
}

export interface TocImage {
  /** where the image sits in the bundle, e.g. `stacks[0].runImage` */
  path: string
  /** the reference as written in the bundle (the source) */
  ref: string
  /** its `org.opencontainers.image.ref.name` in index.json: `skopeo inspect oci-archive:FILE:<name>` */
  name: string
  digest: string
  mediaType: string
  /** `os/arch[/variant]` of each platform (one for a single-platform image, when known) */
  platforms: string[]
  /** every manifest of the image: itself, an index's children, referrers */
  manifests: string[]
  /** every blob of the image, each once, with its size */
  blobs: Array<{digest: string; size: number}>
  /** sum of the image's blob sizes */
  bytes: number
}

export interface TocFile {
  path: string
  size: number
  digest: string
}

export interface Toc {
  format: typeof TOC_FORMAT
  createdBy: string
  bundle: {name: string; version: string; kind: string; files: TocFile[]}
  images: TocImage[]
  manifests: TocManifest[]
  /** blobs the archive holds */
  blobs: TocBlob[]
  /** blobs the images need that the archive leaves out: a delta's base holds them */
  external: TocBlob[]
  /** sum of every image's bytes (a blob shared by two images counts twice) */
  totalBytes: number
  /** sum of the unique blobs the images need, archived or external */
  uniqueBytes: number
  /** sum of the blobs in the archive */
  archivedBytes: number
  /** a delta: the version whose blobs were left out */
  since?: {name: string; version: string}
}

export function platformString(p: Platform | undefined): string | undefined {
  if (!p?.os || !p.architecture) return undefined
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/')
}
