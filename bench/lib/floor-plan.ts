/**
 * The floor's input (tools/floor): what to move, worked out by kpi's planner beforehand (not
 * measured), so the floor does no discovery at all. Each unique blob goes to the first repository
 * that needs it and is mounted into the others; manifests go leaves first.
 */
import {writeFile} from 'node:fs/promises'
import {isIndexMediaType} from '../../src/oci/index.js'
import type {Plan} from '../../src/relocate/plan.js'

export interface FloorEndpoint {
  url: string
  username?: string
  password?: string
  caFile?: string
}

export interface FloorPlanOptions {
  source: FloorEndpoint
  dest: FloorEndpoint
  /** blobs and manifests (by digest) the destination already holds: the floor of a patch skips them */
  have?: {blobs: Set<string>; manifests: Set<string>}
  /** false: no mounts (a registry whose blobs serve every repository, and which declines them) */
  mounts?: boolean
}

export async function writeFloorPlan(file: string, plan: Plan, opts: FloorPlanOptions): Promise<{bytes: number; blobs: number}> {
  const blobs = new Map<string, {digest: string; size: number; src: string; dst: string; mounts: string[]}>()
  const manifests: Array<{digest: string; mediaType: string; src: string; dst: string; tags: string[]; index: boolean}> = []
  for (const m of plan.manifests) {
    for (const b of m.blobs) {
      if (opts.have?.blobs.has(b.digest)) continue
      const seen = blobs.get(b.digest)
      if (!seen) blobs.set(b.digest, {digest: b.digest, size: b.size, src: m.src.repository, dst: m.dst.repository, mounts: []})
      else if (opts.mounts !== false && seen.dst !== m.dst.repository && !seen.mounts.includes(m.dst.repository)) seen.mounts.push(m.dst.repository)
    }
    if (opts.have?.manifests.has(m.manifest.digest)) continue
    manifests.push({digest: m.manifest.digest, mediaType: m.manifest.mediaType, src: m.src.repository, dst: m.dst.repository, tags: m.tags, index: isIndexMediaType(m.manifest.mediaType)})
  }
  const list = [...blobs.values()]
  await writeFile(file, JSON.stringify({source: opts.source, dest: opts.dest, blobs: list, manifests}), {mode: 0o600})
  return {bytes: list.reduce((a, b) => a + b.size, 0), blobs: list.length}
}
