import {constants} from 'node:fs'
import {access, rename, stat, writeFile} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'
import {Flags} from '@oclif/core'
import {loadBundle} from '../bundle/load.js'
import {openBundle, recordLock} from '../bundle/source.js'
import {serializeBundle} from '../bundle/serialize.js'
import {KpiCommand} from '../cli/base.js'
import {registryClientFromFlags, registryFlags} from '../cli/registry.js'
import {KpiError} from '../errors.js'
import type {Repo} from '../oci/index.js'
import {formatBytes, progressMode, withProgress} from '../cli/progress.js'
import type {RelocationSummary} from '../relocate/execute.js'
import {imagesLockFor, imagesLockPath} from '../relocate/images-lock.js'
import {destinationRepo, formatDigestRef, parseDestination} from '../relocate/naming.js'
import {fromRegistry, toRegistry} from '../relocate/registry-endpoints.js'
import {relocate, type RelocationFrom} from '../relocate/relocate.js'

export default class Relocate extends KpiCommand {
  static override description = `Copy every image of a bundle to another registry, or across the air gap through one archive file

Registry to registry:      kpi relocate -b BUNDLE --to-repo REGISTRY/PREFIX --lock-output LOCK
Into an archive:           kpi relocate -b BUNDLE --to-tar FILE [--since OLD] [--resume] [--split SIZE]
Archive to a registry:     kpi relocate --from-tar FILE --to-repo REGISTRY/PREFIX --lock-output LOCK

Each image goes to REGISTRY/PREFIX/<its source repository>; digests never change. Credentials
come from the docker config (~/.docker/config.json or $DOCKER_CONFIG) or KPI_REGISTRY_USERNAME
and KPI_REGISTRY_PASSWORD (for the --to-repo registry, or for KPI_REGISTRY_HOSTNAME's).`

  static override examples = [
    '<%= config.bin %> relocate -b ./build-service --to-repo registry.corp.example/build-service --lock-output lock.yaml',
    '<%= config.bin %> relocate -b ./build-service --to-tar build-service-1.4.0.tar --split 4GiB',
    '<%= config.bin %> relocate --from-tar build-service-1.4.0.tar --to-repo registry.corp.example/build-service --lock-output lock.yaml',
    '<%= config.bin %> relocate -b registry.example/platform/build-service@sha256:<digest> --to-repo registry.corp.example/build-service --lock-output lock.yaml --lock-format imgpkg',
  ]

  static override flags = {
    bundle: Flags.string({char: 'b', description: 'bundle directory or bundle.yaml (or a relocated lock), or a bundle image REPO@sha256:<digest> (kpi bundle push)'}),
    'to-repo': Flags.string({description: 'destination REGISTRY/PREFIX'}),
    'to-tar': Flags.string({description: 'write an archive file for the air gap'}),
    'from-tar': Flags.string({description: 'read images from an archive file (its first part, if split)'}),
    'from-oci-layout': Flags.string({description: 'read the bundle images from an OCI image layout directory (e.g. written by skopeo)'}),
    'lock-output': Flags.string({description: 'write the relocated lock (the bundle with every reference at the destination) here'}),
    'lock-format': Flags.string({
      description: 'also write the lock in this format beside --lock-output: imgpkg writes Carvel\'s ImagesLock (LOCK.images.yml) for imgpkg copy --lock',
      options: ['kpi', 'imgpkg'],
      multiple: true,
    }),
    since: Flags.string({description: 'with --to-tar: a bundle or lock of the version the destination has; write only what it lacks'}),
    resume: Flags.boolean({description: 'with --to-tar: continue an interrupted archive', default: false}),
    split: Flags.string({description: 'with --to-tar: write parts of at most this size (e.g. 4GiB, 700MB)'}),
    'page-cache': Flags.boolean({description: 'with --to-tar: write through the page cache, not around it with O_DIRECT (for a spinning disk or a network file system that does better with the kernel\'s writeback)', default: false}),
    'no-referrers': Flags.boolean({description: 'leave signatures, SBOMs and attestations behind', default: false}),
    ...registryFlags,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Relocate)
    const mode = progressMode(flags)
    const referrers = !flags['no-referrers']
    const toRepo = flags['to-repo']
    if (flags['to-tar'] && toRepo) throw new KpiError('usage', 'give either --to-tar or --to-repo, not both')
    if (!flags['to-tar'] && !toRepo) throw new KpiError('usage', 'missing destination', {hint: 'give --to-repo REGISTRY/PREFIX or --to-tar FILE'})
    if (flags['lock-format'] && !flags['lock-output']) throw new KpiError('usage', '--lock-format goes with --lock-output LOCK', {hint: 'the other formats are written beside the lock'})
    if (toRepo && !flags['lock-output']) throw new KpiError('usage', '--to-repo needs --lock-output LOCK', {hint: 'the lock records where every image went; render and install read it'})
    if (flags['from-tar'] && flags.bundle) throw new KpiError('usage', '--from-tar carries its own bundle: drop -b')
    if (flags['from-tar'] && flags['to-tar']) throw new KpiError('usage', '--from-tar goes with --to-repo', {hint: 'an archive is read into a registry; to copy the archive, copy its file (or all its parts)'})
    if (!flags['from-tar'] && !flags.bundle) throw new KpiError('usage', 'missing -b BUNDLE (or --from-tar FILE)')
    // each of these would otherwise be accepted and silently do nothing
    if (flags['to-tar'] && flags['lock-output']) {
      throw new KpiError('usage', '--lock-output goes with --to-repo: an archive holds no relocated lock', {hint: 'the lock is written where the archive is read into a registry: kpi relocate --from-tar FILE --to-repo REGISTRY/PREFIX --lock-output LOCK'})
    }
    const archiveOnly = archiveOnlyFlags(flags)
    if (!flags['to-tar'] && archiveOnly.length) throw new KpiError('usage', `${archiveOnly.join(', ')} ${archiveOnly.length === 1 ? 'goes' : 'go'} with --to-tar`, {hint: 'a relocation to a registry copies only what the destination lacks by itself'})

    if (flags['from-oci-layout'] && !toRepo) throw new KpiError('usage', '--from-oci-layout goes with --to-repo', {hint: 'the layout is read into a registry; to make an archive, give -b and --to-tar'})
    if (flags['from-oci-layout'] && flags['from-tar']) throw new KpiError('usage', 'give either --from-tar or --from-oci-layout, not both')
    const splitSize = flags.split ? parseSize(flags.split) : undefined
    if (splitSize !== undefined && splitSize < 64 << 10) throw new KpiError('usage', `--split ${flags.split} is too small`, {hint: 'parts must be at least 64KiB, e.g. --split 4GiB'})
    // fail on an unwritable output now, not after every blob has moved
    if (flags['lock-output']) await checkWritableDir(flags['lock-output'], '--lock-output')
    if (flags['to-tar']) {
      await checkWritableDir(flags['to-tar'], '--to-tar')
      const {checkArchiveTarget} = await import('../archive/parts.js')
      await checkArchiveTarget(flags['to-tar'])
    }

    const dest = toRepo ? parseDestination(toRepo) : undefined
    const client = await registryClientFromFlags(flags, dest?.registry)
    const opened = flags.bundle ? await openBundle(flags.bundle, client).catch(async (e) => {
      await client.close()
      throw e
    }) : undefined
    try {
      if (flags['to-tar']) {
        const {toArchive} = await import('../archive/export.js')
        const since = flags.since ? await loadBundle(flags.since) : undefined
        const r = await withProgress(mode, `Writing ${flags['to-tar']}`, (onEvent) =>
          relocate({from: fromRegistry(client, opened!.loaded), to: toArchive(flags['to-tar']!, {since, resume: flags.resume, splitSize, concurrency: flags.concurrency, ...(flags['page-cache'] ? {direct: false} : {})}), referrers, onEvent}))
        this.report(flags.json, `Wrote ${flags['to-tar']}`, r.summary, {archive: r.target.archive})
        return
      }
      const to = toRegistry(client, dest!, flags.concurrency)
      const extra: Record<string, unknown> = {lock: flags['lock-output']}
      let headline = `Relocated to ${toRepo}; lock written to ${flags['lock-output']}`
      let recordAt: {repo: Repo; digest: string} | undefined
      let from: RelocationFrom
      let title: string
      let concurrency: number | undefined
      if (flags['from-tar']) {
        const {fromArchive} = await import('../archive/import.js')
        from = fromArchive(flags['from-tar'])
        title = `Relocating ${flags['from-tar']} to ${toRepo}`
      } else if (flags['from-oci-layout']) {
        const {fromLayout} = await import('../archive/import.js')
        from = fromLayout(flags['from-oci-layout'], opened!.loaded)
        title = `Relocating ${flags['from-oci-layout']} to ${toRepo}`
      } else {
        const {loaded, image} = opened!
        if (image) recordAt = {repo: destinationRepo(dest!, image.repo), digest: image.digest}
        // the bundle image itself travels too, byte for byte, and then says where its images went
        from = fromRegistry(client, loaded, image && recordAt
          ? () => [{path: 'bundle image', ref: image.ref, src: image.repo, dst: recordAt!.repo, digest: image.digest, tags: image.tag ? [image.tag] : []}]
          : undefined)
        title = `Relocating ${loaded.bundle.metadata.name} ${loaded.bundle.metadata.version} to ${toRepo}`
        concurrency = flags.concurrency * 2
      }
      const {lock, summary} = await withProgress(mode, title, (onEvent) => relocate({from, to, referrers, onEvent, concurrency}))
      await writeAtomically(flags['lock-output']!, serializeBundle(lock))
      if (recordAt) {
        await recordLock(client, recordAt.repo, recordAt.digest, lock)
        extra.bundleImage = formatDigestRef(recordAt.repo, recordAt.digest)
        headline += `; bundle image ${extra.bundleImage} (carries the lock)`
      }
      if (flags['lock-format']?.includes('imgpkg')) {
        const file = imagesLockPath(flags['lock-output']!)
        await writeAtomically(file, imagesLockFor(lock))
        extra.imagesLock = file
        headline += ` (ImagesLock: ${file})`
      }
      this.report(flags.json, headline, summary, extra)
    } finally {
      await opened?.close()
      await client.close()
    }
  }

  private report(json: boolean, headline: string, s: RelocationSummary, extra: Record<string, unknown>): void {
    if (json) {
      this.log(JSON.stringify({ok: true, summary: s, ...extra}))
      return
    }
    const secs = s.durationMs / 1000
    this.log(headline)
    const there = s.imagesThere ? ` (${s.imagesThere === s.images ? 'all' : s.imagesThere} already there under every tag: not read again)` : ''
    this.log(`  images: ${s.images}${there}, manifests: ${s.manifests.pushed} pushed, ${s.manifests.skipped} already there`)
    this.log(`  blobs: ${s.blobs.copied} copied, ${s.blobs.mounted} mounted, ${s.blobs.skipped} already there`)
    const of = s.imagesThere === s.images ? '' : ` of ${formatBytes(s.uniqueBytes)} unique${s.imagesThere ? ' in the images read' : ''}`
    this.log(`  bytes moved: ${formatBytes(s.bytesMoved)}${of}${s.bytesMoved === 0 ? ` (nothing to move: the destination had every ${s.imagesThere === s.images ? 'image' : 'blob'})` : ''}`)
    this.log(`  time: ${secs.toFixed(1)}s (${formatBytes(s.bytesMoved / Math.max(secs, 0.001))}/s)`)
  }
}

/** The flags that shape an archive being written, as given. */
function archiveOnlyFlags(flags: {since?: string; resume: boolean; split?: string; 'page-cache': boolean}): string[] {
  const given = {'--since': flags.since !== undefined, '--resume': flags.resume, '--split': flags.split !== undefined, '--page-cache': flags['page-cache']}
  return Object.entries(given).filter(([, on]) => on).map(([name]) => name)
}

export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(s)
  if (!m) throw new KpiError('usage', `--split "${s}" is not a size`, {hint: 'write it like 4GiB, 700MB or 1048576'})
  const unit = (m[2] ?? 'b').toLowerCase()
  const pow = {b: 0, k: 1, m: 2, g: 3, t: 4}[unit[0] as 'b' | 'k' | 'm' | 'g' | 't']
  const base = unit.includes('i') || unit.length === 1 ? 1024 : 1000
  return Math.floor(Number(m[1]) * base ** pow)
}

async function checkWritableDir(file: string, flag: string): Promise<void> {
  const dir = dirname(resolve(file))
  try {
    const st = await stat(dir)
    if (!st.isDirectory()) throw new Error('not a directory')
    await access(dir, constants.W_OK)
  } catch {
    throw new KpiError('input', `${flag} ${file}: cannot write into ${dir}`, {hint: 'create the directory or choose a writable path'})
  }
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`
  await writeFile(tmp, text)
  await rename(tmp, file)
}
