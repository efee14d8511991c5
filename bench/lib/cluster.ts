/** Cluster steps benchmarks share: running a tool, and taking the platform away between rounds. */
import {spawn} from 'node:child_process'
import type {Kube} from '../../src/kube/client.js'
import type {LiveObject} from '../../src/kube/types.js'
import {withRusage, type Rusage} from './measure.js'
import type {Line} from './phases.js'

/** A tool's run; its rusage from GNU time, none without it. */
export interface Run extends Rusage {
  code: number | null
  out: string
  ms: number
  /** every output line (stdout and stderr) with the ms since start when it arrived (bench/lib/phases.ts) */
  lines: Line[]
}

/** Runs a tool as a user would, under GNU time when it is installed (its own peak RSS). */
export function exec(cmd: string, args: string[], env: Record<string, string>): Promise<Run> {
  return withRusage(cmd, args, (c, a) => spawned(c, a, env), {ifInstalled: true})
}

function spawned(cmd: string, args: string[], env: Record<string, string>): Promise<Run> {
  const t0 = performance.now()
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {env: {...process.env, ...env, CI: 'true', NO_COLOR: '1'}, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    const lines: Line[] = []
    const reader = () => {
      let partial = ''
      return (d: Buffer) => {
        out += d
        const parts = (partial + d.toString('utf8')).split('\n')
        partial = parts.pop()!
        const ms = performance.now() - t0
        for (const text of parts) lines.push({ms, text})
      }
    }
    child.stdout.on('data', reader())
    child.stderr.on('data', reader())
    child.on('close', (code) => resolve({code, out, ms: performance.now() - t0, lines}))
  })
}

export async function must(what: string, p: Promise<Run>): Promise<Run> {
  const r = await p
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.out.slice(-3000)}`)
  return r
}

/**
 * Deletes everything the platform made (and what the tools keep: kpi's kpi-system, Helm's release
 * Secrets, kapp's app ConfigMaps) and waits until its namespaces and CRDs are gone.
 */
export async function teardown(kube: Kube, objects: LiveObject[], extra: Array<{apiVersion: string; kind: string; name: string; namespace?: string}> = []): Promise<void> {
  for (const o of [...objects].reverse()) {
    await kube.delete({apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, namespace: o.metadata.namespace}).catch(() => false)
  }
  for (const r of [{apiVersion: 'v1', kind: 'Namespace', name: 'kpi-system'}, ...extra]) await kube.delete(r).catch(() => false)
  const gone = [...objects.filter((o) => o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition'), {apiVersion: 'v1', kind: 'Namespace', metadata: {name: 'kpi-system'}} as LiveObject]
  const deadline = Date.now() + 180_000
  for (const o of gone) {
    const since = Date.now()
    for (;;) {
      const live = await kube.get({apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name}).catch(() => undefined)
      if (!live) break
      // Seen now and then: a CRD deleted a second after it was created keeps its cleanup finalizer
      // ("could not list instances: storage is (re)initializing", an apiserver race). Its instances
      // are deleted above; let it go.
      if (o.kind === 'CustomResourceDefinition' && Date.now() - since > 30_000 && live.metadata.finalizers) {
        console.log(`  teardown: ${o.metadata.name} kept its finalizers for 30s (${JSON.stringify((live.status as {conditions?: unknown})?.conditions)}); removing them`)
        await kube.request('PATCH', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${o.metadata.name}`, {contentType: 'application/merge-patch+json', body: {metadata: {finalizers: null}}})
      }
      if (Date.now() > deadline) throw new Error(`teardown: ${o.kind} ${o.metadata.name} still there after 3 minutes: ${JSON.stringify(live.status)}`)
      await new Promise((r) => setTimeout(r, 250))
    }
  }
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
export const secs = (ms: number): string => `${(ms / 1000).toFixed(2)}s`
