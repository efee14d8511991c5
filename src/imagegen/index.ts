/** The deterministic image generator: layers, images, indexes and the sample platform, into an OCI layout. */
export {writeLayer, defaultCacheDir, GENERATOR_VERSION, type LayerBlob, type LayerFile, type LayerOptions, type LayerSpec} from './layer.js'
export {generateImage, generateIndex, layerWriter, FIXED_CREATED, type GeneratedImage, type GeneratedIndex, type ImageConfigSpec, type ImageSpec, type LayerWriter} from './image.js'
export {blobPath, ensureLayout, refName, tagImages, writeBlob, KPI_REPOSITORY, KPI_TAG, REF_NAME, type LayoutTag} from './layout.js'
export {generateFromSpec, generateSample, loadSampleSpec, writeBundleDir, SAMPLE_SPEC, type SampleImage, type SampleOptions, type SampleResult, type SampleSpec} from './sample.js'
export {randomStream, type RandomStream} from './prng.js'
