/**
 * Upgrade, rollback, and a failed upgrade back to a healthy previous revision: kpi against its peers
 * applying the same rendered objects on the same sandbox (registries + control plane, KWOK nodes),
 * in one run, alternating who goes first:
 *
 * - kpi:  kpi upgrade (stages, gates, prune, automatic rollback), kpi rollback 1
 * - helm: Helm 4, a chart whose templates are the rendered objects (CRDs in crds/, which Helm never
 *         upgrades, so the new CRDs are applied first with kubectl server-side, as Helm users do);
 *         helm upgrade --install --rollback-on-failure --wait=watcher, helm rollback --wait=watcher
 * - kapp: kapp deploy of the rendered objects; kapp has no rollback, so "back to healthy" is the
 *         failed deploy followed by kapp deploy of v1
 *
 * The failing upgrade asks more CPU for kpack-controller than any KWOK node has: the scheduler
 * leaves its pod Pending, and each tool's wait times out after the same gate timeout. "failed gate
 * to healthy" is the time after that timeout until v1 is healthy again.
 *
 *   npm run build && npx tsx bench/upgrade.ts [--rounds 2] [--gate 15]
 */
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parseAllDocuments, stringify} from 'yaml'
import {createKubeClient} from '../src/kube/client.js'
import type {LiveObject} from '../src/kube/types.js'
import {findTool} from '../src/sandbox/tools.js'
import {exec, median, must, secs, teardown, type Run} from './lib/cluster.js'
import {fmtLoad, formatMachineFacts, machineFacts} from './lib/machine.js'
import {beginRun} from './lib/run.js'
import {findKpi, findPeer, KPI_BIN} from './lib/tools.js'

const arg = (name: string, dflt: number) => Number(process.argv[process.argv.indexOf(name) + 1]) || dflt
const rounds = arg('--rounds', 2)
const gateS = arg('--gate', 15)

/** Helm 4 as scripts/tools.sh builds it (benchpeers), or $KPI_HELM_BIN. */
const findHelm = (): string | undefined => process.env.KPI_HELM_BIN ?? findTool('helm')

interface Flow {
  name: string
  install(): Promise<Run>
  upgrade(): Promise<Run>
  rollback(): Promise<Run>
  /** the failing upgrade and whatever brings v1 back, total */
  failAndRecover(): Promise<number>
}

async function main(): Promise<void> {
  console.log(formatMachineFacts(machineFacts()))
  const kpiTool = await findKpi(['apply', 'kube', 'revision', 'render'])
  if (kpiTool.note) console.log(`warning: ${kpiTool.note}`)
  const kapp = (await findPeer('kapp')).path
  const helm = findHelm()
  const kubectl = findTool('kubectl')
  const run = await beginRun('upgrade', {say: console.log})
  try {
    // KWOK alone (no kpack code): every tool judges the same things (CRDs, rollouts); kpack resources carry no status
    const sb = await run.startSandbox({controlPlane: true, samples: ['v1', 'v2'], runPods: false})
    const kubeconfig = sb.controlPlane!.kubeconfig
    const env = {...sb.env, KUBECONFIG: kubeconfig}
    const kube = await createKubeClient({kubeconfig})
    const w = run.workDir
    const kpi = (...a: string[]) => exec(process.execPath, [KPI_BIN, ...a], env)
    const lock = async (v: 'v1' | 'v2') => {
      const f = join(w, `lock-${v}.yaml`)
      await must('kpi relocate', kpi('relocate', '-b', sb.bundles[v]!, '--to-repo', sb.airgapPrefix, '--lock-output', f, '--ca-cert', sb.caFile))
      return f
    }
    const [lock1, lock2] = [await lock('v1'), await lock('v2')]
    const values = async (name: string, kpack: Record<string, unknown> = {}) => {
      const f = join(w, `${name}.yaml`)
      await writeFile(f, stringify({
        registry: {server: sb.airgap.host, repository: 'build-service', username: sb.airgap.username, password: sb.airgap.password},
        caCerts: [await readFile(sb.caFile, 'utf8')], teams: [{name: 'payments'}], kpack: {webhook: {failurePolicy: 'Ignore'}, ...kpack},
      }))
      return f
    }
    const vals = await values('values')
    const greedy = await values('values-greedy', {controller: {resources: {requests: {cpu: '64'}}}})
    const render = async (l: string, v: string) => {
      const out = (await must('kpi render', kpi('render', '-b', l, '-f', v))).out
      return parseAllDocuments(out.slice(out.indexOf('---'))).map((d) => d.toJS() as LiveObject).filter(Boolean)
    }
    const platforms = {v1: await render(lock1, vals), v2: await render(lock2, vals), bad: await render(lock2, greedy)}
    const all = [...platforms.v1, ...platforms.v2.filter((o) => !platforms.v1.some((x) => x.kind === o.kind && x.metadata.name === o.metadata.name))]
    const yaml = (objs: LiveObject[]) => objs.map((o) => `---\n${stringify(o)}`).join('')
    const crdsOf = (objs: LiveObject[]) => objs.filter((o) => o.kind === 'CustomResourceDefinition')
    const files: Record<string, string> = {}
    for (const [k, objs] of Object.entries(platforms)) {
      files[k] = join(w, `platform-${k}.yaml`)
      await writeFile(files[k]!, yaml(objs))
      const chart = join(w, `chart-${k}`)
      await mkdir(join(chart, 'templates'), {recursive: true})
      await mkdir(join(chart, 'crds'), {recursive: true})
      await writeFile(join(chart, 'Chart.yaml'), stringify({apiVersion: 'v2', name: 'kpi-bench', version: k === 'v1' ? '1.0.0' : '1.1.0'}))
      await writeFile(join(chart, 'crds', 'crds.yaml'), yaml(crdsOf(objs)))
      await writeFile(join(chart, 'templates', 'platform.yaml'), yaml(objs.filter((o) => o.kind !== 'CustomResourceDefinition')))
      files[`chart-${k}`] = chart
    }
    const gate = `${gateS}s`
    const flows: Flow[] = [{
      name: 'kpi',
      install: () => must('kpi install', kpi('install', '-b', lock1, '-f', vals, '--ca-cert', sb.caFile, '--wait=applied')),
      upgrade: () => must('kpi upgrade', kpi('upgrade', '-b', lock2, '-f', vals, '--ca-cert', sb.caFile, '--wait=applied')),
      rollback: () => must('kpi rollback', kpi('rollback', '1', '--wait=applied')),
      failAndRecover: async () => {
        const r = await kpi('upgrade', '-b', lock2, '-f', greedy, '--ca-cert', sb.caFile, '--wait=applied', '--timeout', gate)
        if (r.code !== 12) throw new Error(`kpi upgrade should have rolled back (exit 12), got ${r.code}:\n${r.out.slice(-2000)}`)
        return r.ms
      },
    }]
    if (helm && kubectl) {
      const h = (what: string, ...a: string[]) => exec(helm, [what, ...a, '--kubeconfig', kubeconfig], env)
      const crdsFirst = (k: string) => must('kubectl apply crds', exec(kubectl, ['--kubeconfig', kubeconfig, 'apply', '--server-side', '--force-conflicts', '-f', join(files[`chart-${k}`]!, 'crds', 'crds.yaml')], env))
      flows.push({
        name: 'helm',
        install: () => must('helm install', h('upgrade', '--install', 'kpi-bench', files['chart-v1']!, '--wait=watcher', '--timeout', '5m')),
        upgrade: async () => {
          const t0 = performance.now()
          await crdsFirst('v2')
          const r = await must('helm upgrade', h('upgrade', '--install', 'kpi-bench', files['chart-v2']!, '--rollback-on-failure', '--wait=watcher', '--timeout', '5m'))
          return {...r, ms: performance.now() - t0}
        },
        rollback: () => must('helm rollback', h('rollback', 'kpi-bench', '1', '--wait=watcher', '--timeout', '5m')),
        failAndRecover: async () => {
          const t0 = performance.now()
          await crdsFirst('bad')
          const r = await h('upgrade', '--install', 'kpi-bench', files['chart-bad']!, '--rollback-on-failure', '--wait=watcher', '--timeout', gate)
          if (r.code === 0) throw new Error('helm upgrade of the unschedulable controller succeeded')
          return performance.now() - t0
        },
      })
    } else {
      console.log(`helm: skipped (${helm ? 'kubectl' : 'helm 4'} not built: bash scripts/tools.sh peers, or KPI_HELM_BIN)`)
    }
    if (kapp) {
      const k = (f: string, ...a: string[]) => exec(kapp, ['deploy', '-a', 'kpi-bench', '-f', f, '-y', '--kubeconfig', kubeconfig, ...a], env)
      flows.push({
        name: 'kapp',
        install: () => must('kapp deploy v1', k(files.v1!)),
        upgrade: () => must('kapp deploy v2', k(files.v2!)),
        rollback: () => must('kapp deploy v1', k(files.v1!)),
        failAndRecover: async () => {
          const r = await k(files.bad!, '--wait-timeout', gate)
          if (r.code === 0) throw new Error('kapp deploy of the unschedulable controller succeeded')
          return r.ms + (await must('kapp deploy v1', k(files.v1!))).ms
        },
      })
    } else {
      console.log('kapp: skipped (not built: bash scripts/tools.sh peers)')
    }
    const extra = [{apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-bench', namespace: 'default'}, {apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-bench-change-0', namespace: 'default'}]
    const clean = async () => {
      await teardown(kube, all, extra)
      for (const s of await kube.list('v1', 'Secret', {namespace: 'default', labelSelector: 'owner=helm,name=kpi-bench'})) await kube.delete({apiVersion: 'v1', kind: 'Secret', name: s.metadata.name, namespace: 'default'})
      for (const c of await kube.list('v1', 'ConfigMap', {namespace: 'default', labelSelector: 'kapp.k14s.io/app'})) await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: c.metadata.name, namespace: 'default'})
      for (const c of await kube.list('v1', 'ConfigMap', {namespace: 'default'})) if (c.metadata.name.startsWith('kpi-bench')) await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: c.metadata.name, namespace: 'default'})
    }
    console.log(`${platforms.v1.length} objects in v1, ${platforms.v2.length} in v2; ${rounds} rounds; gate timeout ${gate}`)
    const times = new Map<string, {upgrade: number[]; rollback: number[]; recover: number[]}>(flows.map((f) => [f.name, {upgrade: [], rollback: [], recover: []}]))
    for (let round = 1; round <= rounds; round++) {
      for (const f of round % 2 ? flows : [...flows].reverse()) {
        run.checkInterrupted()
        await clean()
        await f.install()
        const t = times.get(f.name)!
        t.upgrade.push((await f.upgrade()).ms)
        t.rollback.push((await f.rollback()).ms)
        t.recover.push((await f.failAndRecover()) - gateS * 1000)
        console.log(`  round ${round}: ${f.name.padEnd(5)} upgrade ${secs(t.upgrade.at(-1)!)}  rollback ${secs(t.rollback.at(-1)!)}  failed gate -> healthy v1 ${secs(t.recover.at(-1)!)}`)
      }
    }
    await clean()
    kube.close()
    console.log(`\nmedians of ${rounds} (same sandbox, same rendered objects):`)
    console.log(`  ${'tool'.padEnd(6)} ${'upgrade'.padStart(9)} ${'rollback'.padStart(9)} ${'gate->v1'.padStart(9)}`)
    for (const f of flows) {
      const t = times.get(f.name)!
      console.log(`  ${f.name.padEnd(6)} ${secs(median(t.upgrade)).padStart(9)} ${secs(median(t.rollback)).padStart(9)} ${secs(median(t.recover)).padStart(9)}`)
    }
    console.log(`load at the end: ${fmtLoad(machineFacts().loadavg)}`)
    console.log('kpi also runs preflight (access reviews, every image HEADed), gates each stage, prunes, and records revisions; kapp has no rollback (v1 deployed again); Helm upgrades no CRD (applied first by kubectl).')
  } finally {
    await run.finish()
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e)
  process.exitCode = 1
})
