/** The OCI registry client: the one import for the rest of kpi (tests may reach into the modules). */
export * from './types.js'
export {createRegistryClient, type OciClient, type OciClientOptions} from './client.js'
export {MAX_MANIFEST_BYTES} from './manifests.js'
export {attachReferrer, linkReferrer, parseIndexManifests, referrerDescriptor, referrersTag, type ReferrersApiProbe} from './referrers.js'
export {nextLink} from './tags.js'
export {parseReference, formatReference, formatRepo, formatImage, repoOf, isDigest, checkDigest, normaliseRegistry, DOCKER_HUB} from './reference.js'
export {digestOf, sha256Digest, digestHex, algorithmOf, verifyingStream, verifiedFrom, DigestVerifier, digestCheck, type VerifyOptions} from './digest.js'
export {
  authEntryFor, credentialsFor, credentialResolver, dockerConfigCredentials, dockerConfigFile, envCredentials, entryCredentials, hasUnscopedEnvCredentials, parseDockerConfig,
  readDockerConfig, runCredentialHelper, type CredentialOptions, type DockerAuthEntry, type DockerConfig,
} from './dockerconfig.js'
export {isLoopbackRegistry, registryBaseUrl, mapTransportError, type ProxyOptions} from './transport.js'
export {readImageConfig, type ImageConfig} from './image-config.js'
export {pushBlobBytes, readBlobBytes} from './blob-bytes.js'
export {doneWith, handOut, lend, recycle, takeBuffer} from './buffer-pool.js'
export {backoffMs, defaultRetryPolicy, isConnectionReset, isSilence, type RetryPolicy} from './retry.js'
