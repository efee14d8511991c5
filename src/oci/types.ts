/**
 * The OCI registry client's contract. Relocation, archives, preflight and the image generator
 * all talk to registries only through this.
 */
import type {Readable} from 'node:stream'

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

export const manifestAccept = [
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifestList,
  MediaTypes.dockerManifest,
].join(', ')

export const isIndexMediaType = (mt: string): boolean =>
  mt === MediaTypes.ociIndex || mt === MediaTypes.dockerManifestList

/** A parsed image reference: `registry/repository[:tag][@digest]`. */
export interface ImageRef {
  /** host[:port], normalised (docker.io for Docker Hub) */
  registry: string
  /** path within the registry, e.g. `kpack/controller` (library/ prefix added for Docker Hub) */
  repository: string
  tag?: string
  digest?: string
}

/** A repository in a registry, the unit registries scope tokens to. */
export interface Repo {
  registry: string
  repository: string
}

export interface Platform {
  architecture: string
  os: string
  variant?: string
  'os.version'?: string
  'os.features'?: string[]
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
  platform?: Platform
  urls?: string[]
}

export interface ImageManifest {
  schemaVersion: 2
  mediaType?: string
  artifactType?: string
  config: Descriptor
  layers: Descriptor[]
  subject?: Descriptor
  annotations?: Record<string, string>
}

export interface ImageIndex {
  schemaVersion: 2
  mediaType?: string
  artifactType?: string
  manifests: Descriptor[]
  subject?: Descriptor
  annotations?: Record<string, string>
}

/** A manifest exactly as the registry served it: bytes are kept so digests never change. */
export interface FetchedManifest {
  bytes: Buffer
  mediaType: string
  digest: string
}

export interface BlobPushResult {
  action: 'copied' | 'skipped' | 'mounted'
}

export interface RegistryClient {
  /** GET /v2/ and authenticate; throws a KpiError naming the registry on failure. */
  ping(registry: string): Promise<void>
  /** Fetch a manifest or index by tag or digest; the digest is verified when asked by digest. */
  getManifest(repo: Repo, reference: string): Promise<FetchedManifest>
  /**
   * Opens `count` connections for blob uploads to `registry` before they are needed: a TLS
   * handshake under a relocation's load took 25-30 ms of the patch release's path to its changed
   * layer. A hint: nothing fails here.
   */
  preconnect?(registry: string, count: number): void
  /** HEAD a manifest; undefined when it does not exist. */
  headManifest(repo: Repo, reference: string): Promise<Descriptor | undefined>
  /** PUT a manifest under a tag or its digest; returns the digest the registry reports. */
  putManifest(repo: Repo, reference: string, bytes: Buffer, mediaType: string): Promise<string>
  /** HEAD a blob. */
  hasBlob(repo: Repo, digest: string): Promise<boolean>
  /**
   * Stream a blob. The stream errors (with a KpiError of kind 'integrity') if the bytes do not
   * hash to `digest` or the length differs from `size` when given. Never buffered whole.
   * `verify: false` leaves the digest to whoever receives the bytes (a registry, which checks
   * every upload against its digest); the length is still checked.
   */
  getBlob(repo: Repo, digest: string, size?: number, opts?: {verify?: boolean}): Promise<Readable>
  /**
   * Upload a blob from a stream (POST, then one streamed PUT). `open` is called again on a retry,
   * so it must return a fresh stream each time. With `mountFrom` the POST asks to mount the blob
   * from that repository of the registry first: 'mounted' when it did (`open` is never called).
   */
  putBlob(repo: Repo, digest: string, size: number, open: () => Promise<Readable> | Readable, opts?: {mountFrom?: string}): Promise<'uploaded' | 'mounted'>
  /** Cross-repository mount; false when the registry declined (then the caller uploads). */
  mountBlob(repo: Repo, digest: string, fromRepository: string): Promise<boolean>
  /**
   * Referrers of a manifest (OCI 1.1): the referrers API, or the `sha256-<hex>` fallback tag
   * when the registry lacks it. Empty when none.
   */
  referrers(repo: Repo, digest: string): Promise<Descriptor[]>
  /** List tags of a repository (used for the referrers fallback and tests). */
  listTags(repo: Repo): Promise<string[]>
  /** Release connections. */
  close(): Promise<void>
}

export interface Credentials {
  username?: string
  password?: string
  /** an identity token (docker config `identitytoken`): exchanged for a bearer token */
  identityToken?: string
  /** a ready bearer token */
  registryToken?: string
  /** where these came from, for hints (e.g. `docker config /home/u/.docker/config.json`); never a secret */
  source?: string
}

export interface ClientOptions {
  /** extra CA certificates (PEM text), added to the system CAs */
  caCerts?: string[]
  /** explicit opt-in to skip TLS verification */
  insecureSkipTlsVerify?: boolean
  /** registries (host[:port]) whose certificates are not verified: an explicit opt-in per registry */
  insecureRegistry?: (registry: string) => boolean
  /**
   * registries to talk to over plain HTTP. Loopback registries (localhost, 127.0.0.0/8, ::1) need
   * no entry: like docker and go-containerregistry, HTTPS is tried first and plain HTTP used when
   * that is what the registry answers
   */
  plainHttp?: (registry: string) => boolean
  /** told once per registry when a loopback registry is found to answer plain HTTP (commands say so) */
  onPlainHttp?: (registry: string) => void
  /** credentials looked up per registry; defaults to the docker config and environment */
  credentials?: (registry: string) => Promise<Credentials | undefined>
  /** maximum concurrent connections per registry */
  connections?: number
  /**
   * how long a registry may stay silent (no response headers, or no body bytes) before the
   * request fails naming it; default DEFAULT_REGISTRY_TIMEOUT_MS
   */
  timeoutMs?: number
  /** retry attempts for idempotent requests on 429, 5xx and connection resets */
  retries?: number
  userAgent?: string
}
