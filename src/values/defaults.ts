/** Defaults the schema, the loader and the renderer share. */
import type {KpackFeatureFlags} from './types.js'

/** kpack's own feature-flag settings (its release's config/controller.yaml). */
export const KPACK_FEATURE_DEFAULTS: Readonly<KpackFeatureFlags> = {
  injectedSidecarSupport: false,
  priorityClasses: false,
  slsaAttestation: false,
  gitShallowClone: false,
  sshTrustUnknownHosts: true,
}

/** kpack's SCALING_FACTOR, as its release sets it. */
export const KPACK_SCALING_FACTOR_DEFAULT = 1
