/**
 * How each tool runs each workload of `npm run bench`, at its best documented settings, the way
 * its users script it:
 *
 * - kpi and imgpkg take the whole bundle in one process (imgpkg through an ImagesLock);
 * - crane, skopeo, regctl and oras have no bundle: one process per image, `PEER_PARALLEL` at a
 *   time (what `xargs -P4` gives), each with its own parallelism inside;
 * - the floor (tools/floor) moves the plan's unique bytes once with the least client work.
 *
 * Every tool verifies the destination's TLS certificate against the sandbox CA, reads the
 * destination's credentials from a docker config, and reads the plain-HTTP source as such; an
 * HTTPS source (`Job.srcCaFile`, a certificate from the same CA) is verified the same way.
 */
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {CommandSpec} from './measure.js'
import {kpiCacheDir} from '../../src/cache-dir.js'

/** Per-image peers run this many images at once. */
export const PEER_PARALLEL = 4

/** `kpi-base`: another kpi build (`--base-bin`), to measure a change against in the same run */
export type ToolId = 'kpi' | 'kpi-base' | 'floor' | 'imgpkg' | 'crane' | 'skopeo' | 'regctl' | 'oras'

/** One image of a release, as the per-image peers copy it. */
export interface ReleaseImage {
  repository: string
  tag: string
  digest: string
}

/** The destination registry of one measured run (htpasswd + TLS, fresh for every run). */
export interface Dest {
  host: string
  caFile: string
  username: string
  password: string
  /** a directory with config.json holding this registry's credentials */
  dockerConfigDir: string
}

/** What a workload gives the tool: where from, where to, and files it may use. */
export interface Job {
  /** the source registry host (the public registry, or the WAN proxy in front of it) */
  srcHost: string
  images: ReleaseImage[]
  /** kpi's bundle directory with references at srcHost */
  bundleDir: string
  /** an imgpkg ImagesLock with the same references */
  imagesLock: string
  /** the floor's plan for this job */
  floorPlan: string
  /** more arguments for the floor (the WAN job's Range GETs) */
  floorArgs?: string[]
  /** the source speaks HTTPS with a certificate from this CA (the destination's), not plain HTTP */
  srcCaFile?: string
  /** a directory this run may write into */
  workDir: string
}

/** A measured step: one process, or per-image processes `concurrency` at a time. */
export type Step = {kind: 'one'; spec: CommandSpec} | {kind: 'pool'; specs: CommandSpec[]; concurrency: number}

export interface ToolPaths {
  node: string
  kpi: string
  'kpi-base'?: string
  floor?: string
  imgpkg?: string
  crane?: string
  skopeo?: string
  regctl?: string
  oras?: string
}

const PREFIX = 'bench'

const srcRef = (job: Job, i: ReleaseImage) => `${job.srcHost}/${i.repository}@${i.digest}`
const dstRef = (d: Dest, i: ReleaseImage) => `${d.host}/${PREFIX}/${i.repository}:${i.tag}`
const fileName = (i: ReleaseImage) => `${i.repository.replace(/\//g, '_')}_${i.tag}`

/** The ImagesLock imgpkg copies (imgpkg.carvel.dev/v1alpha1). */
export async function writeImagesLock(file: string, srcHost: string, images: ReleaseImage[]): Promise<string> {
  const lines = ['apiVersion: imgpkg.carvel.dev/v1alpha1', 'kind: ImagesLock', 'images:']
  for (const i of images) lines.push(`- image: ${srcHost}/${i.repository}@${i.digest}`)
  await writeFile(file, lines.join('\n') + '\n')
  return file
}

/** regctl keeps registry settings in its own config file (REGCTL_CONFIG). */
async function regctlConfig(job: Job, d?: Dest): Promise<string> {
  const hosts: Record<string, Record<string, string>> = {[job.srcHost]: job.srcCaFile ? {tls: 'enabled', regcert: await readFile(job.srcCaFile, 'utf8')} : {tls: 'disabled'}}
  if (d) hosts[d.host] = {tls: 'enabled', regcert: await readFile(d.caFile, 'utf8'), user: d.username, pass: d.password}
  const file = join(job.workDir, 'regctl-config.json')
  await writeFile(file, JSON.stringify({hosts}), {mode: 0o600})
  return file
}

/** skopeo reads CA certificates from a directory: one holding `caFile` (the run's one CA signs every registry) */
async function skopeoCertDir(job: Job, caFile: string): Promise<string> {
  const dir = join(job.workDir, 'skopeo-certs')
  await mkdir(dir, {recursive: true})
  await writeFile(join(dir, 'ca.crt'), await readFile(caFile))
  return dir
}

/**
 * kpi-base keeps its code cache (bin/code-cache.js) apart: a build before 2026-12-07 removed every
 * other build's cache of a command when it wrote its own, so two builds measured in turn each
 * started without one
 */
const kpiEnv = (tool: 'kpi' | 'kpi-base', job: Job, d?: Dest): Record<string, string> => ({NO_COLOR: '1', CI: 'true', ...(job.srcCaFile ? {} : {KPI_PLAIN_HTTP: job.srcHost}), ...(d ? {DOCKER_CONFIG: d.dockerConfigDir} : {}), ...(tool === 'kpi-base' ? {KPI_CACHE_DIR: join(kpiCacheDir(process.env), 'kpi-base')} : {})})
const pool = (specs: CommandSpec[]): Step => ({kind: 'pool', specs, concurrency: PEER_PARALLEL})

/** Registry to registry: every image of the job into `d` under `bench/`. */
export async function copyStep(tool: ToolId, p: ToolPaths, job: Job, d: Dest): Promise<Step> {
  switch (tool) {
    case 'kpi':
    case 'kpi-base':
      return {kind: 'one', spec: {label: `${tool} relocate`, cmd: p.node, args: [kpiBin(tool, p), 'relocate', '-b', job.bundleDir, '--to-repo', `${d.host}/${PREFIX}`, '--lock-output', join(job.workDir, `${tool}-lock.yaml`), '--ca-cert', d.caFile, '--json'], env: kpiEnv(tool, job, d)}}
    case 'floor':
      return {kind: 'one', spec: {label: 'floor copy', cmd: p.floor!, args: ['copy', '-plan', job.floorPlan, ...(job.floorArgs ?? [])]}}
    case 'imgpkg':
      // one repository for the whole lock: imgpkg's model
      return {kind: 'one', spec: {label: 'imgpkg copy --lock', cmd: p.imgpkg!, args: ['copy', '--lock', job.imagesLock, '--to-repo', `${d.host}/${PREFIX}/imgpkg`, '--registry-ca-cert-path', d.caFile, '--lock-output', join(job.workDir, 'imgpkg-lock.yml')], env: {DOCKER_CONFIG: d.dockerConfigDir}}}
    case 'crane':
      // no --insecure: go-containerregistry reads loopback registries over plain HTTP already,
      // and --insecure would also skip verifying the destination's certificate
      return pool(job.images.map((i) => ({label: `crane copy ${i.repository}`, cmd: p.crane!, args: ['copy', '--jobs', String(PEER_PARALLEL), srcRef(job, i), dstRef(d, i)], env: {DOCKER_CONFIG: d.dockerConfigDir, SSL_CERT_FILE: d.caFile}})))
    case 'skopeo': {
      const certDir = await skopeoCertDir(job, d.caFile)
      const src = job.srcCaFile ? ['--src-cert-dir', certDir] : ['--src-tls-verify=false']
      return pool(job.images.map((i) => ({label: `skopeo copy ${i.repository}`, cmd: p.skopeo!, args: ['copy', '--all', '--preserve-digests', ...src, '--dest-cert-dir', certDir, '--dest-authfile', join(d.dockerConfigDir, 'config.json'), `docker://${srcRef(job, i)}`, `docker://${dstRef(d, i)}`]})))
    }
    case 'regctl': {
      const cfg = await regctlConfig(job, d)
      return pool(job.images.map((i) => ({label: `regctl image copy ${i.repository}`, cmd: p.regctl!, args: ['image', 'copy', srcRef(job, i), dstRef(d, i)], env: {REGCTL_CONFIG: cfg}})))
    }
    case 'oras':
      return pool(job.images.map((i) => ({label: `oras cp ${i.repository}`, cmd: p.oras!, args: ['cp', ...(job.srcCaFile ? ['--from-ca-file', job.srcCaFile] : ['--from-plain-http']), '--to-ca-file', d.caFile, '--to-registry-config', join(d.dockerConfigDir, 'config.json'), srcRef(job, i), dstRef(d, i)]})))
  }
}

/** Where a tool's archive of the job goes: one file, or one file or directory per image. */
const oneFile = (tool: ToolId): boolean => tool === 'kpi' || tool === 'kpi-base' || tool === 'imgpkg' || tool === 'floor'
const kpiBin = (tool: 'kpi' | 'kpi-base', p: ToolPaths): string => (tool === 'kpi' ? p.kpi : p['kpi-base']!)

export const archivePath = (tool: ToolId, job: Job): string => join(job.workDir, `archive-${tool}${oneFile(tool) ? '.tar' : ''}`)

/** Registry to archive; undefined when the tool has no archive (crane). */
export async function toArchiveStep(tool: ToolId, p: ToolPaths, job: Job): Promise<Step | undefined> {
  const out = archivePath(tool, job)
  if (!oneFile(tool)) await mkdir(out, {recursive: true})
  switch (tool) {
    case 'kpi':
    case 'kpi-base':
      return {kind: 'one', spec: {label: `${tool} relocate --to-tar`, cmd: p.node, args: [kpiBin(tool, p), 'relocate', '-b', job.bundleDir, '--to-tar', out, ...(job.srcCaFile ? ['--ca-cert', job.srcCaFile] : []), '--json'], env: kpiEnv(tool, job)}}
    case 'floor':
      return {kind: 'one', spec: {label: 'floor write-tar', cmd: p.floor!, args: ['write-tar', '-plan', job.floorPlan, '-out', out, ...(job.floorArgs ?? [])]}}
    case 'imgpkg':
      return {kind: 'one', spec: {label: 'imgpkg copy --to-tar', cmd: p.imgpkg!, args: ['copy', '--lock', job.imagesLock, '--to-tar', out, ...(job.srcCaFile ? ['--registry-ca-cert-path', job.srcCaFile] : [])]}}
    case 'skopeo': {
      const src = job.srcCaFile ? ['--src-cert-dir', await skopeoCertDir(job, job.srcCaFile)] : ['--src-tls-verify=false']
      return pool(job.images.map((i) => ({label: `skopeo copy ${i.repository} oci-archive`, cmd: p.skopeo!, args: ['copy', '--all', ...src, `docker://${srcRef(job, i)}`, `oci-archive:${join(out, fileName(i))}.tar:${i.repository}:${i.tag}`]})))
    }
    case 'regctl': {
      const cfg = await regctlConfig(job)
      return pool(job.images.map((i) => ({label: `regctl image export ${i.repository}`, cmd: p.regctl!, args: ['image', 'export', srcRef(job, i), `${join(out, fileName(i))}.tar`], env: {REGCTL_CONFIG: cfg}})))
    }
    case 'oras':
      return pool(job.images.map((i) => ({label: `oras cp --to-oci-layout ${i.repository}`, cmd: p.oras!, args: ['cp', ...(job.srcCaFile ? ['--from-ca-file', job.srcCaFile] : ['--from-plain-http']), srcRef(job, i), '--to-oci-layout', `${join(out, fileName(i))}:${i.tag}`]})))
    case 'crane':
      return undefined
  }
}

/** Archive to registry: what toArchiveStep wrote, into `d` under `bench/`. */
export async function fromArchiveStep(tool: ToolId, p: ToolPaths, job: Job, d: Dest): Promise<Step | undefined> {
  const from = archivePath(tool, job)
  switch (tool) {
    case 'kpi':
    case 'kpi-base':
      return {kind: 'one', spec: {label: `${tool} relocate --from-tar`, cmd: p.node, args: [kpiBin(tool, p), 'relocate', '--from-tar', from, '--to-repo', `${d.host}/${PREFIX}`, '--lock-output', join(job.workDir, `${tool}-lock-from-tar.yaml`), '--ca-cert', d.caFile, '--json'], env: kpiEnv(tool, job, d)}}
    case 'floor':
      return {kind: 'one', spec: {label: 'floor read-tar', cmd: p.floor!, args: ['read-tar', '-plan', job.floorPlan, '-in', from]}}
    case 'imgpkg':
      return {kind: 'one', spec: {label: 'imgpkg copy --tar', cmd: p.imgpkg!, args: ['copy', '--tar', from, '--to-repo', `${d.host}/${PREFIX}/imgpkg`, '--registry-ca-cert-path', d.caFile], env: {DOCKER_CONFIG: d.dockerConfigDir}}}
    case 'skopeo': {
      const certDir = await skopeoCertDir(job, d.caFile)
      return pool(job.images.map((i) => ({label: `skopeo copy oci-archive ${i.repository}`, cmd: p.skopeo!, args: ['copy', '--all', '--preserve-digests', '--dest-cert-dir', certDir, '--dest-authfile', join(d.dockerConfigDir, 'config.json'), `oci-archive:${join(from, fileName(i))}.tar:${i.repository}:${i.tag}`, `docker://${dstRef(d, i)}`]})))
    }
    case 'regctl': {
      const cfg = await regctlConfig(job, d)
      return pool(job.images.map((i) => ({label: `regctl image import ${i.repository}`, cmd: p.regctl!, args: ['image', 'import', dstRef(d, i), `${join(from, fileName(i))}.tar`], env: {REGCTL_CONFIG: cfg}})))
    }
    case 'oras':
      return pool(job.images.map((i) => ({label: `oras cp --from-oci-layout ${i.repository}`, cmd: p.oras!, args: ['cp', '--from-oci-layout', `${join(from, fileName(i))}:${i.tag}`, '--to-ca-file', d.caFile, '--to-registry-config', join(d.dockerConfigDir, 'config.json'), dstRef(d, i)]})))
    case 'crane':
      return undefined
  }
}
