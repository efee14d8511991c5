/**
 * Where images are copied from and to. Relocation is one engine over these two shapes:
 * a registry, an archive and an OCI layout directory are each a source, a sink, or both.
 */
import type {Readable} from 'node:stream'
import type {Descriptor, FetchedManifest, Repo} from '../oci/index.js'

export interface ImageSource {
  /** for messages: `registry 127.0.0.1:5000`, `archive v2.tar` */
  readonly name: string
  /** what to do when a sink refuses a blob of this source as not matching its digest */
  readonly damagedHint?: string
  getManifest(repo: Repo, reference: string): Promise<FetchedManifest>
  /** `verify: false`: the sink checks digests itself, the source need not (a source may check anyway) */
  getBlob(repo: Repo, digest: string, size: number, opts?: {verify?: boolean}): Promise<Readable>
  referrers(repo: Repo, digest: string): Promise<Descriptor[]>
  /**
   * its referrer lists may name manifests it no longer has (a registry's fallback tag index, kept
   * by clients, outlives a deleted referrer): those are left out with a warning, not an error. An
   * archive's list is what was written with it: one missing there is damage.
   */
  readonly referrersMayBeStale?: boolean
}

export interface ImageSink {
  readonly name: string
  /** the registry host a sink writes to, when it is a registry (enables cross-repository mounts) */
  readonly registry?: string
  /** how many blob uploads may run at once (an archive writes one member at a time) */
  readonly concurrency: number
  /**
   * True when the sink checks every blob against its digest as it receives it (a registry must:
   * OCI distribution answers DIGEST_INVALID): then blobs are streamed to it without hashing
   * them on the way as well, which on two cores was a quarter of kpi's CPU per byte.
   */
  readonly verifiesDigests?: boolean
  hasBlob(repo: Repo, digest: string): Promise<boolean>
  /**
   * True when a manifest present at the sink guarantees everything it refers to is there too
   * (registries that refuse a manifest whose blobs or children are missing, as distribution
   * does): then an image found at the destination is skipped whole, without checking each blob.
   */
  readonly manifestImpliesContent?: boolean
  hasManifest(repo: Repo, digest: string): Promise<boolean>
  /**
   * What `tag` names at the sink, undefined when nothing: a manifest found whole there has only
   * the tags that name something else set again. Without it, all its tags are set again.
   */
  tagged?(repo: Repo, tag: string): Promise<Descriptor | undefined>
  /** uploads are coming, `count` at once at first: get ready for them (a registry opens connections) */
  prepare?(count: number): void
  /** mount a blob from another repository of the same registry; false when declined */
  mountBlob?(repo: Repo, digest: string, fromRepository: string): Promise<boolean>
  /**
   * `open` may be called again on a retry and must return a fresh stream. With `mountFrom` (only
   * when mountsCheck() says so) the sink first mounts the blob from that repository of its
   * registry: 'mounted' when that placed it, and `open` was never called.
   */
  putBlob(repo: Repo, digest: string, size: number, open: () => Promise<Readable>, opts?: {mountFrom?: string}): Promise<'uploaded' | 'mounted' | void>
  /**
   * True once this registry has shown that mounting a blob from the repository it is in answers
   * 201: then one mount request both asks whether a blob is there and, when it is not, opens its
   * upload, and no HEAD is needed before an upload. A registry that ignores mounts (they are
   * optional) would take every blob again, so this holds only after probeMounts has seen it.
   */
  mountsCheck?(): boolean
  /** learns whether mountsCheck() holds, from a blob known to be in `repo`; only the first call asks */
  probeMounts?(repo: Repo, digest: string): Promise<void>
  /** store a manifest by digest (unless `exists`: the sink said it has it), and under `tags` when given */
  putManifest(repo: Repo, manifest: FetchedManifest, tags: string[], exists?: boolean): Promise<void>
  /**
   * Make `referrer` discoverable as a referrer of `subject` at the sink, for registries
   * without the referrers API (the `sha256-<hex>` fallback tag). No-op where not needed.
   */
  linkReferrer?(repo: Repo, subject: string, referrer: Descriptor): Promise<void>
  /** finish: flush and close (an archive writes its table of contents here) */
  close?(): Promise<void>
}
