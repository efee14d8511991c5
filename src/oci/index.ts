/** The OCI registry client: one import for the rest of kpi. */
export * from './types.js'
export {createRegistryClient, referrersTag, parseIndexManifests, MAX_MANIFEST_BYTES, type OciClient, type OciClientOptions} from './client.js'
export {attachReferrer, referrerDescriptor} from './referrers.js'
export {parseReference, formatReference, formatRepo, formatImage, repoOf, isDigest, checkDigest, normaliseRegistry, DOCKER_HUB} from './reference.js'
export {digestOf, sha256Digest, digestHex, algorithmOf, verifyingStream, DigestVerifier, type VerifyOptions} from './digest.js'
export {credentialsFor, credentialResolver, envCredentials, readDockerConfig, dockerConfigFile, runCredentialHelper, type CredentialOptions} from './dockerconfig.js'
export {isLoopbackRegistry, registryBaseUrl, mapTransportError, type ProxyOptions} from './transport.js'
