/**
 * An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as written by
 * `skopeo copy ... oci:DIR:TAG` or an extracted `oci-archive:`, as a relocation source. Content
 * is found by digest (the repository is ignored); every byte is verified as it is read.
 */
import {createReadStream} from 'node:fs'
import {lstat, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {Readable} from 'node:stream'
import {KpiError} from '../errors.js'
import {algorithmOf, type Descriptor, digestHex, digestOf, DigestVerifier, type FetchedManifest, type ImageIndex, isDigest, MediaTypes, verifiedFrom} from '../oci/index.js'
import type {ImageSource} from '../relocate/endpoints.js'
import {MAX_MANIFEST_BYTES} from './reader.js'
import {REF_NAME} from './toc.js'

export interface OciLayout {
  dir: string
  index: ImageIndex
  source: ImageSource
}

export async function openOciLayout(dir: string): Promise<OciLayout> {
  const readJson = async <T>(name: string): Promise<T> => {
    let text: string
    try {
      text = await readFile(join(dir, name), 'utf8')
    } catch {
      throw new KpiError('input', `${dir} is not an OCI image layout: it has no ${name}`, {hint: 'give a directory written by e.g. skopeo copy ... oci:DIR:TAG'})
    }
    try {
      return JSON.parse(text) as T
    } catch {
      throw new KpiError('input', `${join(dir, name)} is not valid JSON`)
    }
  }
  const layout = await readJson<{imageLayoutVersion?: string}>('oci-layout')
  if (typeof layout?.imageLayoutVersion !== 'string') throw new KpiError('input', `${join(dir, 'oci-layout')} has no imageLayoutVersion`)
  const index = await readJson<ImageIndex>('index.json')
  if (!Array.isArray(index?.manifests)) throw new KpiError('input', `${join(dir, 'index.json')} has no manifests list`)

  const blobPath = (digest: string) => {
    if (!isDigest(digest)) throw new KpiError('input', `"${digest}" is not a digest`)
    return join(dir, 'blobs', algorithmOf(digest), digestHex(digest))
  }
  // a blob must be a plain file inside the layout, not a link pointing elsewhere
  const blobStat = async (digest: string, what: string) => {
    const p = blobPath(digest)
    let st
    try {
      st = await lstat(p)
    } catch {
      throw new KpiError('not-found', `OCI layout ${dir} does not hold ${what} ${digest}`, {hint: 'copy the image into the layout with all its platforms (skopeo copy --all)'})
    }
    if (!st.isFile()) throw new KpiError('input', `${p} is not a regular file`)
    return {path: p, size: st.size}
  }

  const mediaTypeOf = (digest: string, bytes: Buffer): string => {
    const listed = index.manifests.find((d) => d.digest === digest)?.mediaType
    try {
      const m = JSON.parse(bytes.toString('utf8')) as {mediaType?: string; manifests?: unknown; config?: unknown}
      if (typeof m.mediaType === 'string') return m.mediaType
      if (listed) return listed
      return Array.isArray(m.manifests) ? MediaTypes.ociIndex : MediaTypes.ociManifest
    } catch {
      throw new KpiError('input', `OCI layout ${dir}: manifest ${digest} is not valid JSON`)
    }
  }

  const getManifest = async (reference: string): Promise<FetchedManifest> => {
    let digest = reference
    if (!isDigest(reference)) {
      const named = index.manifests.find((d) => d.annotations?.[REF_NAME] === reference)
      if (!named) throw new KpiError('not-found', `OCI layout ${dir} has no image named "${reference}"`)
      digest = named.digest
    }
    const {path, size} = await blobStat(digest, 'manifest')
    if (size > MAX_MANIFEST_BYTES) throw new KpiError('input', `OCI layout ${dir}: manifest ${digest} is ${size} bytes, more than ${MAX_MANIFEST_BYTES}`)
    const bytes = await readFile(path)
    if (digestOf(bytes, algorithmOf(digest)) !== digest) {
      throw new KpiError('integrity', `OCI layout ${dir}: manifest ${digest} does not match its digest`, {hint: 'the layout is damaged; copy the image again'})
    }
    return {bytes, mediaType: mediaTypeOf(digest, bytes), digest}
  }

  // referrers: manifests listed in index.json whose subject is the digest (how skopeo and oras store them)
  let subjects: Promise<Map<string, Descriptor[]>> | undefined
  const referrerMap = async () => {
    const map = new Map<string, Descriptor[]>()
    for (const d of index.manifests) {
      try {
        const m = await getManifest(d.digest)
        const parsed = JSON.parse(m.bytes.toString('utf8')) as {subject?: Descriptor; artifactType?: string; config?: {mediaType?: string}}
        if (!parsed.subject?.digest) continue
        const desc: Descriptor = {mediaType: m.mediaType, digest: m.digest, size: m.bytes.length}
        const at = parsed.artifactType ?? parsed.config?.mediaType
        if (at) desc.artifactType = at
        map.set(parsed.subject.digest, [...(map.get(parsed.subject.digest) ?? []), desc])
      } catch {
        // a listed manifest that cannot be read fails later where it is needed, with its own message
      }
    }
    return map
  }

  const source: ImageSource = {
    name: `OCI layout ${dir}`,
    getManifest: (_repo, reference) => getManifest(reference),
    async getBlob(_repo, digest, size, opts): Promise<Readable> {
      const {path, size: actual} = await blobStat(digest, 'blob')
      if (size !== undefined && actual !== size) {
        throw new KpiError('integrity', `OCI layout ${dir}: blob ${digest} is ${actual} bytes, its manifest says ${size}`)
      }
      // into a registry, which checks every digest itself, the length is checked here, not the hash
      return verifiedFrom(createReadStream(path, {highWaterMark: 1 << 20}), new DigestVerifier(digest, {size: actual, label: `blob ${digest} in OCI layout ${dir}`, digest: opts?.verify}))
    },
    async referrers(_repo, digest) {
      subjects ??= referrerMap()
      return (await subjects).get(digest) ?? []
    },
  }
  return {dir, index, source}
}
