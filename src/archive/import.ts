/**
 * Archives and OCI layout directories as relocation sources. An archive carries its bundle and
 * is read front to back; a delta archive checks, before anything is pushed, that the destination
 * has its base. It contacts no registry but the destination.
 */
import type {LoadedBundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import type {RelocationFrom} from '../relocate/relocate.js'
import {fromSource} from '../relocate/registry-endpoints.js'
import {ensureBase} from './delta.js'
import {openOciLayout} from './layout.js'
import {orderPlan} from './order.js'
import {openArchive, type OpenedArchive} from './reader.js'

/** The images of an archive file (its first part, if split), with the bundle it carries. */
export function fromArchive(file: string, opened?: (archive: OpenedArchive) => void): RelocationFrom {
  return {
    async open() {
      const archive = await openArchive(file)
      opened?.(archive)
      return {
        bundle: archive.bundle,
        source: archive.source,
        checkRoots: (roots) => {
          for (const r of roots) {
            if (!archive.toc.images.some((i) => i.digest === r.digest)) {
              throw new KpiError('input', `archive ${file}: the bundle's ${r.path} (${r.digest}) is not among the archived images`, {hint: 'the archive is inconsistent; make it again'})
            }
          }
        },
        arrange: orderPlan,
        beforeCopy: async (plan, target, onEvent) => {
          if (!target.registry) return
          await ensureBase(plan, archive, target.registry.client, target.registry.toRepo, onEvent)
        },
        close: () => archive.close(),
      }
    },
  }
}

/** A bundle's images from an OCI image layout directory (e.g. written by skopeo). */
export function fromLayout(dir: string, bundle: LoadedBundle): RelocationFrom {
  return {open: async (onEvent) => fromSource((await openOciLayout(dir)).source, bundle).open(onEvent)}
}
