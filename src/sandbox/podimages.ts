/**
 * Which real program a pod's image stands for: the sample images are generated stand-ins (they
 * carry no runnable code), so the sandbox maps each one, by digest (a relocation keeps digests), to
 * the binary scripts/tools.sh built from the same project at the same version: kpack's controller
 * and webhook of the bundle's kpack version, cert-injection-webhook's webhook.
 */
import {accessSync, constants} from 'node:fs'
import {join} from 'node:path'
import type {Bundle} from '../bundle/types.js'
import {toolsCacheDir} from './tools.js'

export interface ImageProgram {
  cmd: string
  args?: string[]
}

/** The cached build of one command of a project built from its sources: `<cache>/<project>-<version>/bin/<cmd>`. */
export function projectBinary(project: string, version: string, cmd: string): string {
  return join(toolsCacheDir(), `${project}-${version}`, 'bin', cmd)
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

const digestOf = (ref: string): string | undefined => /@(sha256:[0-9a-f]{64})$/.exec(ref)?.[1]

export interface ImageTable {
  /** the program for a container image, or undefined when KWOK alone plays it */
  binaryFor(image: string): ImageProgram | undefined
  /** adds a bundle's images; returns the programs it names that are not built (absolute paths) */
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
      // tools.sh caches kpack per version as kpack-v<version>
      const v = bundle.kpack.version.startsWith('v') ? bundle.kpack.version : `v${bundle.kpack.version}`
      const wanted: Array<[string | undefined, string]> = [
        [bundle.kpack.images.controller, projectBinary('kpack', v, 'controller')],
        [bundle.kpack.images.webhook, projectBinary('kpack', v, 'webhook')],
      ]
      const missing: string[] = []
      for (const [ref, cmd] of wanted) {
        const d = ref && digestOf(ref)
        if (!d) continue
        if (executable(cmd)) byDigest.set(d, {cmd})
        else missing.push(cmd)
      }
      return missing
    },
  }
}
