/**
 * Where a `-b` argument names a bundle: a directory or file on disk, or a bundle image in a
 * registry by digest (`kpi bundle push`). A bundle image is fetched into a fresh directory, so
 * everything downstream (relocation, archives with the bundle's files) reads it as a directory.
 * A bundle image that kpi relocated carries its relocated lock as a referrer (recordLock): asked
 * for the lock, the image answers with where its images went.
 */
import {mkdtemp, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {KpiError} from '../errors.js'
import {pushBlobBytes, readBlobBytes, attachReferrer, digestOf, formatImage, parseReference, createRegistryClient, MediaTypes, type ClientOptions, type ImageManifest, type RegistryClient, type Repo} from '../oci/index.js'
import {pullBundleArtifact} from './artifact.js'
import {checkBundleText, loadBundle} from './load.js'
import {problemsError} from './problems.js'
import {serializeBundle} from './serialize.js'
import type {Bundle, LoadedBundle} from './types.js'

/** The artifactType of the relocated lock attached to a relocated bundle image. */
export const LOCK_ARTIFACT_TYPE = 'application/vnd.kpi.bundle.lock.v1alpha1+yaml'

export interface BundleImage {
  repo: Repo
  digest: string
  /** the tag it was named by, if any (relocation pushes it too) */
  tag?: string
  ref: string
}

/** A reference by digest that is not a path on disk: a bundle image. */
export async function bundleImageArg(arg: string): Promise<BundleImage | undefined> {
  if (await stat(arg).then(() => true, () => false)) return undefined
  let p
  try {
    p = parseReference(arg)
  } catch {
    return undefined
  }
  if (!arg.includes('/')) return undefined
  if (!p.digest) {
    throw new KpiError('usage', `-b ${arg}: no such file, and as a bundle image it names no digest`, {hint: 'give REPO@sha256:<digest> as kpi bundle push printed it, or a bundle directory'})
  }
  return {repo: {registry: p.registry, repository: p.repository}, digest: p.digest, ...(p.tag ? {tag: p.tag} : {}), ref: arg}
}

export interface OpenedBundle {
  loaded: LoadedBundle
  image?: BundleImage
  /** removes the directory a bundle image was fetched into */
  close(): Promise<void>
}

/** Loads the bundle `-b` names: from disk, or pulled from its bundle image. */
export async function openBundle(arg: string, client: RegistryClient): Promise<OpenedBundle> {
  const image = await bundleImageArg(arg)
  if (!image) return {loaded: await loadBundle(arg), close: async () => {}}
  const dir = await mkdtemp(join(tmpdir(), 'kpi-bundle-'))
  const close = () => rm(dir, {recursive: true, force: true})
  try {
    await pullBundleArtifact(client, image.repo, image.digest, dir)
    return {loaded: await loadBundle(dir), image, close}
  } catch (e) {
    await close()
    throw e
  }
}

/** Attaches the relocated lock to the relocated bundle image, so the image says where its images went. */
export async function recordLock(client: RegistryClient, repo: Repo, bundleDigest: string, lock: Bundle): Promise<string> {
  const subject = await client.getManifest(repo, bundleDigest)
  const body = Buffer.from(serializeBundle(lock))
  const empty = Buffer.from('{}')
  for (const blob of [body, empty]) await pushBlobBytes(client, repo, blob)
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    artifactType: LOCK_ARTIFACT_TYPE,
    config: {mediaType: MediaTypes.ociEmpty, digest: digestOf(empty), size: empty.length},
    layers: [{mediaType: LOCK_ARTIFACT_TYPE, digest: digestOf(body), size: body.length}],
    subject: {mediaType: subject.mediaType, digest: subject.digest, size: subject.bytes.length},
    annotations: {'org.opencontainers.image.title': 'lock.yaml'},
  }
  return attachReferrer(client, repo, Buffer.from(JSON.stringify(m)), MediaTypes.ociManifest)
}

/** The relocated lock a relocated bundle image carries (the newest, when it was relocated here more than once). */
export async function readRecordedLock(client: RegistryClient, image: BundleImage): Promise<LoadedBundle> {
  const where = formatImage(image.repo, image.digest)
  const locks = (await client.referrers(image.repo, image.digest)).filter((d) => d.artifactType === LOCK_ARTIFACT_TYPE)
  const last = locks[locks.length - 1]
  if (!last) {
    throw new KpiError('input', `${where} carries no relocated lock`, {hint: 'relocate it first (kpi relocate -b BUNDLE-IMAGE --to-repo ...) and install from the relocated image or its --lock-output'})
  }
  const m = JSON.parse((await client.getManifest(image.repo, last.digest)).bytes.toString('utf8')) as ImageManifest
  const layer = m.layers[0]
  if (!layer) throw new KpiError('input', `${where}: its lock referrer ${last.digest} has no layer`)
  const raw = (await readBlobBytes(client, image.repo, layer, 16 * 1024 * 1024, `${where}: lock`)).toString('utf8')
  const file = `${where} (lock ${last.digest.slice(0, 19)})`
  const r = checkBundleText(raw, file)
  if (!r.ok) throw problemsError(r.file, r.problems, r.warnings)
  return r.loaded
}

/**
 * The lock `install -b` names: a lock file, or a relocated bundle image (whose recorded lock is
 * read through a client made from `options`).
 */
export async function loadLock(arg: string, options: ClientOptions): Promise<LoadedBundle> {
  const image = await bundleImageArg(arg)
  if (!image) return loadBundle(arg)
  const client = createRegistryClient(options)
  try {
    return await readRecordedLock(client, image)
  } finally {
    await client.close()
  }
}
