/**
 * The consistency check after a fault: walk what the destination registry holds (its catalog,
 * every tag, and every manifest digest the source images have) and report every manifest that
 * refers to a missing blob or child manifest. A relocation that stops anywhere must leave none.
 * Against go-containerregistry's registry, which accepts an image manifest whose blobs are missing,
 * this is what catches a manifest pushed before its blobs.
 */
import {bundleImages} from '../../src/bundle/images.js'
import type {Bundle} from '../../src/bundle/types.js'
import {nextLink, parseReference, type ImageIndex, type ImageManifest, type RegistryClient, type Repo} from '../../src/oci/index.js'

/** Every manifest digest of the bundle's images (index children and referrers included), by source repository. */
export async function sourceManifests(client: RegistryClient, bundle: Bundle): Promise<Set<string>> {
  const out = new Set<string>()
  const visit = async (repo: Repo, digest: string): Promise<void> => {
    if (out.has(digest)) return
    out.add(digest)
    const m = await client.getManifest(repo, digest)
    const parsed = JSON.parse(m.bytes.toString('utf8')) as Partial<ImageIndex & ImageManifest>
    for (const c of parsed.manifests ?? []) await visit(repo, c.digest)
    for (const r of await client.referrers(repo, digest)) await visit(repo, r.digest)
  }
  for (const img of bundleImages(bundle)) {
    const ref = parseReference(img.ref)
    await visit({registry: ref.registry, repository: ref.repository}, ref.digest!)
  }
  return out
}

export interface WalkResult {
  repositories: number
  /** manifests present at the destination */
  present: number
  /** each manifest that refers to something missing */
  problems: string[]
}

/** Walks `registry` (plain HTTP, no auth: the test's own registry) below `prefix/`. */
export async function walkDestination(client: RegistryClient, registry: string, prefix: string, candidates: Iterable<string>): Promise<WalkResult> {
  const repos: string[] = []
  for (let url: string | undefined = `http://${registry}/v2/_catalog?n=1000`; url;) {
    const res: Response = await fetch(url)
    if (!res.ok) throw new Error(`catalog of ${registry}: ${res.status}`)
    repos.push(...(((await res.json()) as {repositories?: string[] | null}).repositories ?? []).filter((r) => r.startsWith(`${prefix}/`)))
    url = nextLink(res.headers.get('link') ?? undefined, url)
  }
  const problems: string[] = []
  let present = 0
  const checked = new Set<string>()
  const check = async (repo: Repo, digest: string): Promise<void> => {
    const key = `${repo.repository}@${digest}`
    if (checked.has(key)) return
    checked.add(key)
    present++
    const m = await client.getManifest(repo, digest)
    const parsed = JSON.parse(m.bytes.toString('utf8')) as Partial<ImageIndex & ImageManifest>
    for (const c of parsed.manifests ?? []) {
      if (!(await client.headManifest(repo, c.digest))) problems.push(`${key}: child manifest ${c.digest} missing`)
      else await check(repo, c.digest)
    }
    for (const b of [parsed.config, ...(parsed.layers ?? [])]) {
      if (b && !(await client.hasBlob(repo, b.digest))) problems.push(`${key}: blob ${b.digest} missing`)
    }
  }
  for (const repository of repos) {
    const repo = {registry, repository}
    const digests = new Set(candidates)
    for (const tag of await client.listTags(repo)) {
      const d = await client.headManifest(repo, tag)
      if (d) digests.add(d.digest)
    }
    for (const d of digests) if (await client.headManifest(repo, d)) await check(repo, d)
  }
  return {repositories: repos.length, present, problems}
}
