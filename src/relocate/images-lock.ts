/**
 * The relocated lock as Carvel's ImagesLock (imgpkg.carvel.dev/v1alpha1), the file
 * `imgpkg copy --lock` reads and kbld writes: one entry per distinct image, by digest only
 * (imgpkg parses each with go-containerregistry's NewDigest and reads the file strictly, so no
 * other fields). Annotations say where each came from and where it sits in the bundle.
 */
import {stringify} from 'yaml'
import {bundleImages} from '../bundle/images.js'
import type {Bundle} from '../bundle/types.js'
import {formatReference, parseReference} from '../oci/index.js'

export const IMAGES_LOCK_API_VERSION = 'imgpkg.carvel.dev/v1alpha1'

/** Where the ImagesLock goes beside a lock file: `lock.yaml` -> `lock.images.yml`. */
export const imagesLockPath = (lockFile: string): string => `${lockFile.replace(/\.ya?ml$/i, '')}.images.yml`

export function imagesLockFor(lock: Bundle): string {
  const images = new Map<string, {image: string; annotations: Record<string, string>}>()
  for (const {path, ref} of bundleImages(lock)) {
    const p = parseReference(ref)
    const image = formatReference({registry: p.registry, repository: p.repository, digest: p.digest})
    const entry = images.get(image)
    if (entry) {
      entry.annotations['kpi.dev/paths'] += `,${path}`
      continue
    }
    const origin = lock.origins?.[ref]
    images.set(image, {
      image,
      annotations: {
        ...(origin ? {'kbld.carvel.dev/id': origin} : {}),
        'kpi.dev/paths': path,
      },
    })
  }
  return stringify({apiVersion: IMAGES_LOCK_API_VERSION, kind: 'ImagesLock', images: [...images.values()]}, {lineWidth: 0})
}
