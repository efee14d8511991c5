/**
 * The registry client (distribution API v2 / OCI distribution 1.1) on undici, assembled from the
 * request layer (request.ts: retry, auth, TLS) and the operations on it: manifests, blobs,
 * referrers and tags. One probe of `/v2/` per registry learns how it authenticates; after that
 * requests carry a cached token and cost one round trip each.
 */
import {blobOps} from './blobs.js'
import {manifestOps} from './manifests.js'
import {referrerOps, type ReferrersApiProbe} from './referrers.js'
import {createRequester, type RequestOptions} from './request.js'
import {tagOps} from './tags.js'
import type {RegistryClient} from './types.js'

export interface OciClientOptions extends RequestOptions {
  /** tags asked for per page of the tag list (default 1000) */
  tagPageSize?: number
}

/** RegistryClient plus what this implementation can also tell (whether a registry serves the referrers API). */
export interface OciClient extends RegistryClient, ReferrersApiProbe {}

export function createRegistryClient(opts: OciClientOptions = {}): OciClient {
  const http = createRequester(opts)
  const manifests = manifestOps(http)
  return {
    ping: http.ping,
    preconnect: http.preconnect,
    ...manifests,
    ...blobOps(http),
    ...referrerOps(http, manifests),
    ...tagOps(http, opts.tagPageSize),
    close: http.close,
  }
}
