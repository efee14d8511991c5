/**
 * The bundle manifest v1alpha1 (see ../shared/README.md): the contract other tools and the tests
 * write. A relocated lock has the same shape, every reference rewritten to the destination, plus
 * `origins` (destination reference -> source reference).
 */
import type {BundleProblem} from './problems.js'

export interface KpackImages {
  controller: string
  webhook: string
  buildInit: string
  buildWaiter: string
  rebase: string
  completion: string
}

/**
 * cert-injection-webhook (github.com/vmware-tanzu/cert-injection-webhook), what Tanzu Build Service
 * uses to put CA certificates and proxy settings into build pods.
 */
export interface CertInjectionImages {
  /** its webhook */
  webhook: string
  /** the image of the init container it injects into build pods (setup-ca-certs) */
  setupCaCerts: string
}

export interface Stack {
  name: string
  id: string
  buildImage: string
  runImage: string
}

export interface StoreSource {
  image: string
}

export interface Store {
  name: string
  sources: StoreSource[]
}

export interface BuilderOrderEntry {
  group: Array<{id: string; version?: string; optional?: boolean}>
}

export interface Builder {
  name: string
  stack: string
  store: string
  order: BuilderOrderEntry[]
  /** optional: a namespaced Builder for a team rather than a ClusterBuilder */
  namespace?: string
}

export interface Bundle {
  apiVersion: 'kpi/v1alpha1'
  kind: 'Bundle' | 'BundleLock'
  metadata: {name: string; version: string}
  kpack: {version: string; images: KpackImages}
  /** optional: build pods get the CA certificates and proxy through cert-injection-webhook */
  certInjection?: CertInjectionImages
  lifecycle: {image: string}
  stacks: Stack[]
  stores: Store[]
  builders: Builder[]
  /** only in a lock: destination reference -> the source reference it was copied from */
  origins?: Record<string, string>
}

/** Where an image reference sits in a bundle: a path like `stacks[0].runImage`. */
export interface BundleImage {
  path: string
  ref: string
}

/** A loaded bundle: the parsed manifest plus where it came from. */
export interface LoadedBundle {
  bundle: Bundle
  /** the bundle.yaml file (or the single file given) */
  file: string
  /** the bundle directory, when a directory was given; its other files travel in archives */
  dir?: string
  /** raw bytes of bundle.yaml as read */
  raw: string
  /** optional (added): non-fatal findings, e.g. unknown descriptive fields that are ignored */
  warnings?: BundleProblem[]
}

/** A file of a bundle directory as it travels (in an archive or a bundle image). */
export interface BundleFile {
  /** path inside the bundle directory, with `/` separators */
  path: string
  bytes: Buffer
}
