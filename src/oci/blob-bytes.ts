/**
 * Small blobs held whole: image configs, a bundle's files, a lock. Layers of images are never read
 * this way (they are streamed); these have a size limit, and a blob over it is refused.
 */
import {Readable} from 'node:stream'
import {KpiError} from '../errors.js'
import {digestOf} from './digest.js'
import {formatRepo} from './reference.js'
import type {RegistryClient, Repo} from './types.js'

/** Reads a blob of at most `max` bytes (verified against its digest and size by the client). */
export async function readBlobBytes(client: RegistryClient, repo: Repo, blob: {digest: string; size: number}, max: number, what: string): Promise<Buffer> {
  if (blob.size > max) throw new KpiError('input', `${what}: blob ${formatRepo(repo)}@${blob.digest} is ${blob.size} bytes, more than the ${max} it may have`)
  const chunks: Buffer[] = []
  for await (const c of await client.getBlob(repo, blob.digest, blob.size)) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** Uploads bytes as a blob unless the repository has it; returns its descriptor fields. */
export async function pushBlobBytes(client: RegistryClient, repo: Repo, bytes: Buffer): Promise<{digest: string; size: number}> {
  const digest = digestOf(bytes)
  if (!(await client.hasBlob(repo, digest))) await client.putBlob(repo, digest, bytes.length, () => Readable.from([bytes]))
  return {digest, size: bytes.length}
}
