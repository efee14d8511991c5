/**
 * Which real program a pod's image stands for: the sample images are generated stand-ins (they
 * carry no runnable code), so the sandbox maps each one, by digest (a relocation keeps digests), to
 * the binary scripts/tools.sh built from the same project at the same version: kpack's controller
 * and webhook of the bundle's kpack version, cert-injection-webhook's webhook.
 */
import type {Bundle} from '../bundle/types.js'
import {isKpiError} from '../errors.js'
import {certInjectionBinaryPath, kpackBinaryPath} from './tools.js'

export interface ImageProgram {
  cmd: string
  args?: string[]
}

const digestOf = (ref: string): string | undefined => /@(sha256:[0-9a-f]{64})$/.exec(ref)?.[1]

export interface ImageTable {
  /** the program for a container image, or undefined when KWOK alone plays it */
  binaryFor(image: string): ImageProgram | undefined
  /** adds a bundle's images; returns why programs it names cannot run (not built), one line each */
  add(bundle: Bundle): string[]
}

export function imageTable(): ImageTable {
  const byDigest = new Map<string, ImageProgram>()
  return {
    binaryFor: (image) => {
      const d = digestOf(image)
      return d ? byDigest.get(d) : undefined
    },
    add: (bundle) => {
      const v = bundle.kpack.version
      const wanted: Array<[string | undefined, () => string]> = [
        [bundle.kpack.images.controller, () => kpackBinaryPath(v, 'controller')],
        [bundle.kpack.images.webhook, () => kpackBinaryPath(v, 'webhook')],
        [bundle.certInjection?.webhook, () => certInjectionBinaryPath('webhook')],
      ]
      const missing: string[] = []
      for (const [ref, path] of wanted) {
        const d = ref && digestOf(ref)
        if (!d) continue
        try {
          byDigest.set(d, {cmd: path()})
        } catch (e) {
          if (!isKpiError(e)) throw e
          missing.push(e.message)
        }
      }
      return missing
    },
  }
}
