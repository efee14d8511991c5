/**
 * A deterministic order for a plan. planImages lists manifests in the order their fetches
 * finished, which varies from run to run; an archive must hold its members in the same order
 * every time (a resumed run must give the same bytes as an uninterrupted one). This re-lists the
 * manifests by a depth-first walk from the roots sorted by bundle path: children before their
 * index, subjects before their referrers (sorted by digest), the same guarantees as before.
 * The archive writer places blobs in `blobOrder(plan)`, whatever order their downloads finish in.
 */
import type {Plan, PlanBlob, PlanManifest} from '../relocate/plan.js'
import type {Repo} from '../oci/index.js'

const key = (r: Repo, digest: string) => `${r.registry}/${r.repository}@${digest}`

export function orderPlan(plan: Plan): Plan {
  const byKey = new Map<string, PlanManifest>()
  const referrers = new Map<string, PlanManifest[]>()
  for (const m of plan.manifests) {
    byKey.set(key(m.dst, m.manifest.digest), m)
    if (m.subject) {
      const k = key(m.dst, m.subject.digest)
      referrers.set(k, [...(referrers.get(k) ?? []), m])
    }
  }
  const seen = new Set<string>()
  const out: PlanManifest[] = []
  const visit = (m: PlanManifest | undefined) => {
    if (!m) return
    const k = key(m.dst, m.manifest.digest)
    if (seen.has(k)) return
    seen.add(k)
    for (const c of m.children) visit(byKey.get(key(m.dst, c)))
    out.push(m)
    const refs = [...(referrers.get(k) ?? [])].sort((a, b) => (a.manifest.digest < b.manifest.digest ? -1 : 1))
    for (const r of refs) visit(r)
  }
  const roots = [...plan.roots].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  for (const r of roots) visit(byKey.get(key(r.dst, r.digest)))
  // anything not reachable from a root (not expected) keeps a stable place at the end
  const rest = plan.manifests.filter((m) => !seen.has(key(m.dst, m.manifest.digest)))
  rest.sort((a, b) => (key(a.dst, a.manifest.digest) < key(b.dst, b.manifest.digest) ? -1 : 1))
  for (const m of rest) visit(m)
  return {...plan, roots, manifests: out}
}

/** Each unique blob once, in the order an ordered plan first needs it. */
export function blobOrder(plan: Plan): PlanBlob[] {
  const seen = new Set<string>()
  const out: PlanBlob[] = []
  for (const m of plan.manifests) {
    for (const b of m.blobs) {
      if (seen.has(b.digest)) continue
      seen.add(b.digest)
      out.push(plan.blobs.get(b.digest) ?? {digest: b.digest, size: b.size, mediaType: b.mediaType})
    }
  }
  return out
}

/** Each unique manifest digest once, in plan order (children first). */
export function manifestOrder(plan: Plan): string[] {
  const seen = new Set<string>()
  const out: string[] = []
  for (const m of plan.manifests) {
    if (seen.has(m.manifest.digest)) continue
    seen.add(m.manifest.digest)
    out.push(m.manifest.digest)
  }
  return out
}
