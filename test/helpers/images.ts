/** Checks and fixtures the relocation tests share, all through the real OCI client. */
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {expect} from 'vitest'
import {createRegistryClient, type OciClient} from '../../src/oci/client.js'
import {sha256Digest} from '../../src/oci/digest.js'
import {parseReference} from '../../src/oci/reference.js'
import {MediaTypes, type ImageIndex, type ImageManifest, type RegistryClient, type Repo} from '../../src/oci/types.js'
import {startSandbox, type Sandbox} from '../../src/sandbox/sandbox.js'

export const refRepo = (ref: string): Repo => {
  const r = parseReference(ref)
  return {registry: r.registry, repository: r.repository}
}

export const refDigest = (ref: string): string => parseReference(ref).digest!

/** Clients for the sandbox's public registry (plain) and air-gapped registry (its CA and user). */
export async function sandboxClients(sb: Sandbox): Promise<{src: OciClient; dst: OciClient}> {
  const caPem = await readFile(sb.caFile, 'utf8')
  return {
    src: createRegistryClient({plainHttp: (r) => r === sb.public.host}),
    dst: createRegistryClient({caCerts: [caPem], credentials: async () => ({username: sb.airgap.username, password: sb.airgap.password})}),
  }
}

/** A test file's registries: the sandbox's (sample v1, no control plane) in a new work directory, a client for each. */
export interface RegistrySandbox {
  sb: Sandbox
  work: string
  src: OciClient
  dst: OciClient
  env: Record<string, string>
}

export async function startRegistrySandbox(prefix: string): Promise<RegistrySandbox> {
  const work = await mkdtemp(join(tmpdir(), prefix))
  const sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']})
  return {sb, work, env: {...sb.env}, ...(await sandboxClients(sb))}
}

/**
 * Stops what startRegistrySandbox started (what of it there is, should it have failed half-way)
 * and removes its work directory: the registries' storage is a few hundred MiB per test file.
 */
export async function stopRegistrySandbox(r: {sb?: Sandbox; src?: {close(): Promise<void>}; dst?: {close(): Promise<void>}; work?: string}): Promise<void> {
  await r.dst?.close()
  await r.src?.close()
  await r.sb?.stop()
  if (r.work) await rm(r.work, {recursive: true, force: true, maxRetries: 3})
}

/** Every manifest of the image (index children included) with its blobs, as `client` serves them. */
export async function assertComplete(client: RegistryClient, repo: Repo, digest: string, seen: string[] = []): Promise<string[]> {
  const m = await client.getManifest(repo, digest)
  expect(sha256Digest(m.bytes)).toBe(digest)
  seen.push(digest)
  const parsed = JSON.parse(m.bytes.toString('utf8')) as ImageIndex & ImageManifest
  if (parsed.manifests) {
    for (const c of parsed.manifests) await assertComplete(client, repo, c.digest, seen)
  } else {
    for (const b of [parsed.config, ...parsed.layers]) expect(await client.hasBlob(repo, b.digest), `${repo.repository} blob ${b.digest}`).toBe(true)
  }
  return seen
}

export const SIGNATURE_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json'

/** A cosign-style signature manifest (artifactType and subject) on `subject`, its two blobs pushed. */
export async function signature(c: RegistryClient, repo: Repo, subject: string, text = '', artifactType = SIGNATURE_TYPE): Promise<Buffer> {
  const payload = Buffer.from(JSON.stringify({critical: {image: {'docker-manifest-digest': subject}}, ...(text ? {text} : {})}))
  const empty = Buffer.from('{}')
  for (const b of [payload, empty]) await c.putBlob(repo, sha256Digest(b), b.length, () => Readable.from([b]))
  const head = await c.headManifest(repo, subject)
  if (!head) throw new Error(`subject ${subject} not in ${repo.registry}/${repo.repository}`)
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    artifactType,
    config: {mediaType: MediaTypes.ociEmpty, digest: sha256Digest(empty), size: 2},
    layers: [{mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: sha256Digest(payload), size: payload.length}],
    subject: {mediaType: head.mediaType, digest: subject, size: head.size},
  }))
}
