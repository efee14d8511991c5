/**
 * The sandbox for upgrade tests: registries and a real control plane (KWOK plays the pods; kpack's
 * own controller and webhook run for theirs with `runPods`), the
 * sample's v1 relocated to the air-gapped registry, a values file for it, and helpers to run the
 * CLI, read revision records and relocate v2 when a test wants it there.
 */
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {stringify} from 'yaml'
import {afterAll, beforeAll, expect, onTestFailed} from 'vitest'
import {loadBundle} from '../../src/bundle/load.js'
import type {Bundle} from '../../src/bundle/types.js'
import {createKubeClient, type Kube} from '../../src/kube/client.js'
import {listRevisionHeads, readRevision, type RevisionHead} from '../../src/revision/store.js'
import type {RevisionRecord} from '../../src/revision/record.js'
import {startSandbox, type Sandbox} from '../../src/sandbox/sandbox.js'
import {kpi, type CliResult} from './cli.js'

export interface PlatformSandbox {
  readonly sb: Sandbox
  readonly kube: Kube
  readonly env: Record<string, string>
  readonly work: string
  /** every stdout and stderr seen, to check no credential leaked */
  readonly outputs: string[]
  run(args: string[], extraEnv?: Record<string, string>): Promise<CliResult>
  /** relocates a sample version to the air-gapped registry; returns the lock file */
  relocate(version: 'v1' | 'v2'): Promise<string>
  lock(version: 'v1' | 'v2'): Promise<Bundle>
  /** a values file for the air-gapped registry, with `extra` merged into `kpack` */
  values(name: string, kpack?: Record<string, unknown>): Promise<string>
  heads(): Promise<RevisionHead[]>
  record(revision: number): Promise<RevisionRecord>
  nameRunDir(): void
}

/**
 * `runPods`: kpack's own controller and webhook run for their pods (default: KWOK alone, no kpack code).
 * `samples`: the sample versions the sandbox generates and serves (default v1 and v2).
 */
export function usePlatformSandbox(name: string, opts: {runPods?: boolean; samples?: Array<'v1' | 'v2'>; teams?: string[]} = {}): PlatformSandbox {
  let sb: Sandbox | undefined
  let kube: Kube | undefined
  let work = ''
  let env: Record<string, string> = {}
  let failed = false
  const outputs: string[] = []
  const locks: Partial<Record<'v1' | 'v2', string>> = {}
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), `kpi-${name}-`))
    sb = await startSandbox({runDir: join(work, 'sandbox'), controlPlane: true, samples: opts.samples ?? ['v1', 'v2'], runPods: opts.runPods ?? false, teams: opts.teams})
    if (opts.runPods) expect(sb.missingPrograms, 'kpack binaries (bash scripts/tools.sh)').toEqual([])
    env = {...sb.env, KUBECONFIG: sb.controlPlane!.kubeconfig}
    kube = await createKubeClient({kubeconfig: sb.controlPlane!.kubeconfig})
  })
  afterAll(async () => {
    kube?.close()
    await sb?.stop()
    if (sb && !failed) await rm(work, {recursive: true, force: true})
  })
  const h: PlatformSandbox = {
    get sb() {
      return sb!
    },
    get kube() {
      return kube!
    },
    get env() {
      return env
    },
    get work() {
      return work
    },
    outputs,
    async run(args, extraEnv = {}) {
      const r = await kpi(args, {...env, ...extraEnv})
      outputs.push(r.stdout, r.stderr)
      return r
    },
    async relocate(version) {
      if (locks[version]) return locks[version]!
      const file = join(work, `lock-${version}.yaml`)
      const r = await h.run(['relocate', '-b', sb!.bundles[version]!, '--to-repo', sb!.airgapPrefix, '--lock-output', file, '--ca-cert', sb!.caFile])
      expect(r.code, r.stderr).toBe(0)
      locks[version] = file
      return file
    },
    async lock(version) {
      return (await loadBundle(await h.relocate(version))).bundle
    },
    async values(file, kpack = {}) {
      const ca = await readFile(sb!.caFile, 'utf8')
      const path = join(work, `${file}.yaml`)
      await writeFile(path, stringify({
        registry: {server: sb!.airgap.host, repository: 'build-service', username: sb!.airgap.username, password: sb!.airgap.password},
        caCerts: [ca],
        teams: [{name: 'payments', builders: [{name: 'java-only', stack: 'base', store: 'default', order: [{group: [{id: 'example/java'}]}]}]}],
        // the sandbox runs no kpack-webhook: objects must not depend on it answering
        kpack: {webhook: {failurePolicy: 'Ignore'}, ...kpack},
      }))
      return path
    },
    heads: () => listRevisionHeads(kube!),
    async record(revision) {
      return (await readRevision(kube!, revision))!.record
    },
    nameRunDir: () => onTestFailed(() => {
      failed = true
      console.error(`sandbox run dir: ${sb?.runDir} (control plane logs in ${sb?.controlPlane?.logsDir}, pod logs in ${sb?.controlPlane?.runDir}/logs/pods)`)
    }),
  }
  return h
}

/** True when every field `want` sets is in `got` with the same value (the API server adds defaults). */
export function contains(got: unknown, want: unknown): boolean {
  if (Array.isArray(want)) return Array.isArray(got) && want.length === got.length && want.every((w, i) => contains(got[i], w))
  if (want && typeof want === 'object') {
    return !!got && typeof got === 'object' && Object.entries(want).every(([k, v]) => contains((got as Record<string, unknown>)[k], v))
  }
  return got === want
}
