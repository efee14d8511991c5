/**
 * Every image reference of a bundle with the path where it sits, in one stable order:
 * kpack images, cert-injection-webhook images, lifecycle, stacks (build, run), store sources. Relocation, archives and the
 * lock writer all walk images through here so they agree on order and paths.
 */
import type {Bundle, BundleImage, KpackImages} from './types.js'

const KPACK_IMAGE_ORDER: ReadonlyArray<keyof KpackImages> = [
  'controller', 'webhook', 'buildInit', 'buildWaiter', 'rebase', 'completion',
]

type Visit = (ref: string, path: string, set: (ref: string) => void) => void

function visitImages(b: Bundle, visit: Visit): void {
  const images = b.kpack.images
  for (const key of KPACK_IMAGE_ORDER) {
    const ref = images[key]
    if (ref !== undefined) visit(ref, `kpack.images.${key}`, (r) => { images[key] = r })
  }
  const ci = b.certInjection
  if (ci) {
    visit(ci.webhook, 'certInjection.webhook', (r) => { ci.webhook = r })
    visit(ci.setupCaCerts, 'certInjection.setupCaCerts', (r) => { ci.setupCaCerts = r })
  }
  visit(b.lifecycle.image, 'lifecycle.image', (r) => { b.lifecycle.image = r })
  b.stacks.forEach((s, i) => {
    visit(s.buildImage, `stacks[${i}].buildImage`, (r) => { s.buildImage = r })
    visit(s.runImage, `stacks[${i}].runImage`, (r) => { s.runImage = r })
  })
  b.stores.forEach((s, i) => {
    s.sources.forEach((src, j) => {
      visit(src.image, `stores[${i}].sources[${j}].image`, (r) => { src.image = r })
    })
  })
}

/** Every image reference with its path, e.g. {path: 'stacks[0].runImage', ref}. */
export function bundleImages(b: Bundle): BundleImage[] {
  const out: BundleImage[] = []
  visitImages(b, (ref, path) => out.push({path, ref}))
  return out
}

/** A deep copy of `b` with every image reference replaced by `f(ref, path)`. */
export function mapBundleImages(b: Bundle, f: (ref: string, path: string) => string): Bundle {
  const copy = structuredClone(b)
  visitImages(copy, (ref, path, set) => set(f(ref, path)))
  return copy
}
