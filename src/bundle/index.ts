/** The bundle manifest v1alpha1: load, validate, walk images, write. */
export type {Bundle, BundleImage, Builder, BuilderOrderEntry, KpackImages, LoadedBundle, Stack, Store, StoreSource} from './types.js'
export {BUNDLE_FILE, checkBundle, checkBundleText, loadBundle, parseBundle, type BundleCheck} from './load.js'
export {bundleImages, mapBundleImages} from './images.js'
export {serializeBundle} from './serialize.js'
export {formatProblem, problemsError, type BundleProblem} from './problems.js'
export {checkPinnedReference} from './refs.js'
