/**
 * One real control plane per test file: started before the file's tests, stopped after. A failing
 * test names the run dir with the component logs, which is kept; it is removed when all passed
 * (about 60 MB, mostly etcd's preallocated WAL).
 */
import {KubeConfig} from '@kubernetes/client-node'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, onTestFailed} from 'vitest'
import {startControlPlane, type ControlPlane, type ControlPlaneOptions, type FakeNode} from '../../src/sandbox/controlplane.js'

export interface ControlPlaneHandle {
  readonly cp: ControlPlane
  readonly kc: KubeConfig
  readonly runDir: string
  /** call at the start of a test: on failure, the run dir is named and kept */
  nameRunDir(): void
}

export function useControlPlane(name: string, opts: {nodes?: FakeNode[]; pods?: ControlPlaneOptions['pods']} = {}): ControlPlaneHandle {
  let cp: ControlPlane | undefined
  let kc: KubeConfig | undefined
  let runDir = ''
  let failed = false
  beforeAll(async () => {
    runDir = await mkdtemp(join(tmpdir(), `kpi-${name}-`))
    const t0 = Date.now()
    try {
      cp = await startControlPlane({runDir, nodes: opts.nodes, pods: opts.pods})
    } catch (e) {
      console.error(`control plane failed to start; logs in ${runDir}/logs`)
      throw e
    }
    console.log(`control plane up in ${((Date.now() - t0) / 1000).toFixed(1)}s at ${cp.server} (run dir ${runDir})`)
    kc = new KubeConfig()
    kc.loadFromFile(cp.kubeconfig)
  })
  afterAll(async () => {
    await cp?.stop()
    if (cp && !failed) await rm(runDir, {recursive: true, force: true})
  })
  return {
    get cp() {
      if (!cp) throw new Error('the control plane is not started')
      return cp
    },
    get kc() {
      if (!kc) throw new Error('the control plane is not started')
      return kc
    },
    get runDir() {
      return runDir
    },
    nameRunDir: () => onTestFailed(() => {
      failed = true
      console.error(`control plane run dir (logs in ${runDir}/logs): ${runDir}`)
    }),
  }
}
