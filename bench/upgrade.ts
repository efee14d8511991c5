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
 * - kubectl: kubectl apply --server-side (CRDs first, waited for until Established, then the rest)
 *         and rollout status of every Deployment; rollback and recovery apply v1 again
 *
 * The failing upgrade asks more CPU for kpack-controller than any KWOK node has: the scheduler
 * leaves its pod Pending, and each tool's wait times out after the same gate timeout. "failed gate
 * to healthy" is the time after that timeout until v1 is healthy again.
 *
 * Every timed operation starts on a settled cluster: the same pause (--settle, 2 s) before each, for
 * every tool. Back to back, a rollout that starts within a second of the previous one's end waits on
 * the cluster's controllers still settling from it (measured with kpi on the same cluster, six
 * upgrade/rollback pairs each way: the rollback's rollout took 0.33-0.51 s right after the
 * upgrade, 0.14-0.21 s after a 1.5 s pause); that would charge the tool that finished its previous
 * step sooner with the cluster's tail, which no user running one operation sees.
 *
 * Each kpi run is given --json, and its event stream says where its time went (bench/lib/phases.ts):
 * start-up, preflight, each stage's apply and gate, record writes, prune, the tail.
 *
 *   npm run build && npx tsx bench/upgrade.ts [--rounds 3] [--gate 15] [--settle 2] [--tools kpi,helm,kapp,kubectl] [--json] [--quick]
 *
 * Results: bench/results/upgrade.json and upgrade.md (with --tools: upgrade-kpi-helm.*; none with --quick).
 */
import {execFileSync} from 'node:child_process'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parseAllDocuments, stringify} from 'yaml'
import {createKubeClient} from '../src/kube/client.js'
import type {LiveObject} from '../src/kube/types.js'
import {findTool} from '../src/sandbox/tools.js'
import {exec, median, must, secs, teardown, type Run} from './lib/cluster.js'
import {fmtBytes} from './lib/format.js'
import {fmtLoad, formatMachineFacts, machineFacts} from './lib/machine.js'
import {beginRun} from './lib/run.js'
import {formatPhases, medianPhases, phasesOf, type Phases} from './lib/phases.js'
import {findKpi, findPeer, KPI_BIN, REPO_ROOT} from './lib/tools.js'

const argv = process.argv.slice(2)
const arg = (name: string, dflt: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) || dflt : dflt)
const quick = argv.includes('--quick')
const json = argv.includes('--json')
const rounds = arg('--rounds', quick ? 1 : 3)
const gateS = arg('--gate', 15)
// `--settle 0` is taken as given (arg() would turn 0 into the default)
const settleS = argv.includes('--settle') ? Number(argv[argv.indexOf('--settle') + 1]) : 2
if (!Number.isFinite(settleS) || settleS < 0) {
  console.error('--settle takes the seconds to pause before each operation (0 or more)')
  process.exit(2)
}
const settle = () => new Promise((resolve) => setTimeout(resolve, settleS * 1000))
const only = argv.includes('--tools') ? argv[argv.indexOf('--tools') + 1]!.split(',') : undefined
// --json: progress on stderr, one JSON document on stdout (bench/run.ts reads it)
const say = (line: string) => (json ? console.error(line) : console.log(line))
/** Why a tool's run failed, in its own words: its last error line, so a fast failure is seen to be the gate's. */
const failure = (r: Run): string => {
  const lines = r.out.split('\n').map((l) => l.trim()).filter(Boolean)
  return (lines.filter((l) => /error/i.test(l)).at(-1) ?? lines.at(-1) ?? `exit ${r.code}`).slice(0, 300)
}

/** the larger peak RSS of the processes one timed operation ran */
const maxRss = (...runs: Run[]): number | undefined => {
  const xs = runs.map((r) => r.peakRssBytes).filter((x): x is number => x !== undefined)
  return xs.length ? Math.max(...xs) : undefined
}

type Verb = 'install' | 'upgrade' | 'rollback' | 'recover'
const VERBS: Verb[] = ['install', 'upgrade', 'rollback', 'recover']

/** Helm 4 as scripts/tools.sh builds it (benchpeers), or $KPI_HELM_BIN. */
const findHelm = (): string | undefined => process.env.KPI_HELM_BIN ?? findTool('helm')

interface Flow {
  name: string
  install(): Promise<Run>
  upgrade(): Promise<Run>
  rollback(): Promise<Run>
  /** the failing upgrade and whatever brings v1 back, total (and kpi's run, for its phases) */
  failAndRecover(): Promise<{ms: number; run?: Run; peakRssBytes?: number}>
}

async function main(): Promise<void> {
  const machine = machineFacts()
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {cwd: REPO_ROOT, encoding: 'utf8'}).trim()
  say(formatMachineFacts(machine))
  const kpiTool = await findKpi(['apply', 'kube', 'revision', 'render'])
  if (kpiTool.note) say(`warning: ${kpiTool.note}`)
  const kappPeer = await findPeer('kapp')
  const kapp = !only || only.includes('kapp') ? kappPeer.path : undefined
  const helm = !only || only.includes('helm') ? findHelm() : undefined
  const kubectl = findTool('kubectl')
  const run = await beginRun('upgrade', {say})
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
    // kubectl is a peer of its own and what applies Helm's new CRDs (Helm never upgrades crds/)
    const kc = (...a: string[]) => exec(kubectl!, ['--kubeconfig', kubeconfig, ...a], env)
    const crdsFile = (k: string) => join(files[`chart-${k}`]!, 'crds', 'crds.yaml')
    const applyCrds = (k: string) => kc('apply', '--server-side', '--force-conflicts', '-f', crdsFile(k))
    const flows: Flow[] = [{
      name: 'kpi',
      install: () => must('kpi install', kpi('install', '-b', lock1, '-f', vals, '--ca-cert', sb.caFile, '--wait=applied', '--json')),
      upgrade: () => must('kpi upgrade', kpi('upgrade', '-b', lock2, '-f', vals, '--ca-cert', sb.caFile, '--wait=applied', '--json')),
      rollback: () => must('kpi rollback', kpi('rollback', '1', '--wait=applied', '--json')),
      failAndRecover: async () => {
        const r = await kpi('upgrade', '-b', lock2, '-f', greedy, '--ca-cert', sb.caFile, '--wait=applied', '--timeout', gate, '--json')
        if (r.code !== 12) throw new Error(`kpi upgrade should have rolled back (exit 12), got ${r.code}:\n${r.out.slice(-2000)}`)
        return {ms: r.ms, run: r, peakRssBytes: r.peakRssBytes}
      },
    }]
    if (helm && kubectl) {
      const h = (what: string, ...a: string[]) => exec(helm, [what, ...a, '--kubeconfig', kubeconfig], env)
      const crdsFirst = (k: string) => must('kubectl apply crds', applyCrds(k))
      flows.push({
        name: 'helm',
        install: () => must('helm install', h('upgrade', '--install', 'kpi-bench', files['chart-v1']!, '--wait=watcher', '--timeout', '5m')),
        upgrade: async () => {
          const t0 = performance.now()
          const crds = await crdsFirst('v2')
          const r = await must('helm upgrade', h('upgrade', '--install', 'kpi-bench', files['chart-v2']!, '--rollback-on-failure', '--wait=watcher', '--timeout', '5m'))
          return {...r, ms: performance.now() - t0, peakRssBytes: maxRss(crds, r)}
        },
        rollback: () => must('helm rollback', h('rollback', 'kpi-bench', '1', '--wait=watcher', '--timeout', '5m')),
        failAndRecover: async () => {
          const t0 = performance.now()
          const crds = await crdsFirst('bad')
          const r = await h('upgrade', '--install', 'kpi-bench', files['chart-bad']!, '--rollback-on-failure', '--wait=watcher', '--timeout', gate)
          if (r.code === 0) throw new Error('helm upgrade of the unschedulable controller succeeded')
          say(`  helm's failed upgrade: ${failure(r)}`)
          return {ms: performance.now() - t0, peakRssBytes: maxRss(crds, r)}
        },
      })
    } else {
      say(`helm: skipped (${helm ? 'kubectl' : 'helm 4'} not built: bash scripts/tools.sh peers, or KPI_HELM_BIN)`)
    }
    if (kubectl && (!only || only.includes('kubectl'))) {
      /**
       * kubectl at its documented best: server-side apply, the CRDs first and waited for until
       * Established (custom resources in the same apply would not be recognised yet), then the rest,
       * then `rollout status` of every Deployment at once. It prunes nothing: an object the new
       * version drops stays (kpi, Helm and kapp delete it), which only spares kubectl work.
       */
      const deploy = async (k: string, timeout: string): Promise<Run & {failed?: {what: string; run: Run}}> => {
        const t0 = performance.now()
        const rest = join(files[`chart-${k}`]!, 'templates', 'platform.yaml')
        const runs: Run[] = []
        const step = async (what: string, p: Promise<Run>) => {
          const r = await p
          runs.push(r)
          return r.code === 0 ? undefined : {what, run: r}
        }
        const failed = await step('apply CRDs', applyCrds(k))
          ?? await step('wait for CRDs', kc('wait', '--for=condition=Established', '--timeout', timeout, '-f', crdsFile(k)))
          ?? await step('apply', kc('apply', '--server-side', '--force-conflicts', '-f', rest))
          ?? (await Promise.all(platforms[k as keyof typeof platforms].filter((o) => o.kind === 'Deployment').map((d) =>
            step('rollout status', kc('rollout', 'status', `deployment/${d.metadata.name}`, '-n', d.metadata.namespace!, '--timeout', timeout))))).find(Boolean)
        const last = runs.at(-1)!
        return {...last, ms: performance.now() - t0, peakRssBytes: maxRss(...runs), failed}
      }
      const ok = async (what: string, k: string) => {
        const r = await deploy(k, '5m')
        if (r.failed) throw new Error(`${what}: kubectl ${r.failed.what} failed (exit ${r.failed.run.code}):\n${r.failed.run.out.slice(-2000)}`)
        return r
      }
      flows.push({
        name: 'kubectl',
        install: () => ok('kubectl apply v1', 'v1'),
        upgrade: () => ok('kubectl apply v2', 'v2'),
        rollback: () => ok('kubectl apply v1', 'v1'),
        failAndRecover: async () => {
          const r = await deploy('bad', gate)
          if (!r.failed) throw new Error('kubectl rollout of the unschedulable controller succeeded')
          say(`  kubectl's failed ${r.failed.what}: ${failure(r.failed.run)}`)
          const back = await ok('kubectl apply v1', 'v1')
          return {ms: r.ms + back.ms, peakRssBytes: maxRss(r, back)}
        },
      })
    } else if (only?.includes('kubectl')) {
      say('kubectl: skipped (not built: bash scripts/tools.sh)')
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
          say(`  kapp's failed deploy: ${failure(r)}`)
          const back = await must('kapp deploy v1', k(files.v1!))
          return {ms: r.ms + back.ms, peakRssBytes: maxRss(r, back)}
        },
      })
    } else {
      say(`kapp: skipped (${only ? 'not in --tools' : kappPeer.skipped ?? 'not built: bash scripts/tools.sh peers'})`)
    }
    const extra = [{apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-bench', namespace: 'default'}, {apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-bench-change-0', namespace: 'default'}]
    const clean = async () => {
      await teardown(kube, all, extra)
      for (const s of await kube.list('v1', 'Secret', {namespace: 'default', labelSelector: 'owner=helm,name=kpi-bench'})) await kube.delete({apiVersion: 'v1', kind: 'Secret', name: s.metadata.name, namespace: 'default'})
      for (const c of await kube.list('v1', 'ConfigMap', {namespace: 'default', labelSelector: 'kapp.k14s.io/app'})) await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: c.metadata.name, namespace: 'default'})
      for (const c of await kube.list('v1', 'ConfigMap', {namespace: 'default'})) if (c.metadata.name.startsWith('kpi-bench')) await kube.delete({apiVersion: 'v1', kind: 'ConfigMap', name: c.metadata.name, namespace: 'default'})
    }
    say(`${platforms.v1.length} objects in v1, ${platforms.v2.length} in v2; ${rounds} rounds; gate timeout ${gate}; ${settleS} s pause before each operation`)
    const times = new Map<string, Record<Verb, number[]>>(flows.map((f) => [f.name, {install: [], upgrade: [], rollback: [], recover: []}]))
    const rss = new Map<string, Record<Verb, number[]>>(flows.map((f) => [f.name, {install: [], upgrade: [], rollback: [], recover: []}]))
    const kpiPhases: Record<Verb, Phases[]> = {install: [], upgrade: [], rollback: [], recover: []}
    const phased = (verb: Verb, r: Run, name: string) => {
      if (name === 'kpi') kpiPhases[verb].push(phasesOf(r.lines, r.ms))
      if (r.peakRssBytes !== undefined) rss.get(name)![verb].push(r.peakRssBytes)
      return r.ms
    }
    for (let round = 1; round <= rounds; round++) {
      for (const f of round % 2 ? flows : [...flows].reverse()) {
        run.checkInterrupted()
        await clean()
        const t = times.get(f.name)!
        await settle()
        t.install.push(phased('install', await f.install(), f.name))
        await settle()
        t.upgrade.push(phased('upgrade', await f.upgrade(), f.name))
        await settle()
        t.rollback.push(phased('rollback', await f.rollback(), f.name))
        await settle()
        const rec = await f.failAndRecover()
        if (rec.run && f.name === 'kpi') kpiPhases.recover.push(phasesOf(rec.run.lines, rec.run.ms))
        if (rec.peakRssBytes !== undefined) rss.get(f.name)!.recover.push(rec.peakRssBytes)
        t.recover.push(rec.ms - gateS * 1000)
        say(`  round ${round}: ${f.name.padEnd(5)} ${VERBS.map((v) => `${v} ${secs(t[v].at(-1)!)}`).join('  ')}`)
      }
    }
    await clean()
    kube.close()
    const medians = Object.fromEntries(flows.map((f) => [f.name, Object.fromEntries(VERBS.map((v) => [v, median(times.get(f.name)![v])]))])) as Record<string, Record<Verb, number>>
    const phases = Object.fromEntries(VERBS.map((v) => [v, medianPhases(kpiPhases[v])])) as Record<Verb, Phases>
    const endLoad = machineFacts().loadavg
    const heads = ['tool', 'install', 'upgrade', 'rollback', 'gate -> healthy v1']
    const table = [
      `| ${heads.join(' | ')} |`, `|${heads.map(() => '---').join('|')}|`,
      ...flows.map((f) => `| ${f.name} | ${VERBS.map((v) => secs(medians[f.name]![v])).join(' | ')} |`),
    ]
    // the largest of the rounds: a tool is as heavy as its heaviest run
    const peakRss = Object.fromEntries([...rss].map(([k, v]) => [k, Object.fromEntries(VERBS.map((x) => [x, v[x].length ? Math.max(...v[x]) : undefined]))])) as Record<string, Record<Verb, number | undefined>>
    const rssTable = [
      `| peak RSS | ${heads.slice(1).join(' | ')} |`, `|${heads.map(() => '---').join('|')}|`,
      ...flows.map((f) => `| ${f.name} | ${VERBS.map((v) => fmtBytes(peakRss[f.name]![v]) ?? '-').join(' | ')} |`),
    ]
    const phaseTable = [
      '| kpi phase | install | upgrade | rollback | failed upgrade + rollback |', '|---|---|---|---|---|',
      ...[...new Set(VERBS.flatMap((v) => Object.keys(phases[v])))].map((k) => `| ${k} | ${VERBS.map((v) => (k in phases[v] ? secs(phases[v][k]!) : '')).join(' | ')} |`),
    ]
    const md = [
      `# bench/upgrade.ts, ${machine.date}`, '',
      `${machine.cores} cores, load ${fmtLoad(machine.loadavg)} at the start, ${fmtLoad(endLoad)} at the end; kpi ${kpiTool.version ?? ''} (commit ${commit}); medians of ${rounds} rounds, gate timeout ${gate}, ${settleS} s pause before each operation (the cluster settles from the one before)`, '',
      ...table, '', 'Peak RSS, the largest of the rounds (Helm\'s upgrades include the kubectl that applies the CRDs first; kapp\'s recovery, both deploys; kubectl, the largest of its processes):', '', ...rssTable, '',
      'kpi, median seconds per phase (its --json events; "records between stages" is the time between a stage\'s last task and the next stage\'s start: revision record writes):', '', ...phaseTable, '',
    ].join('\n')
    say(`\nmedians of ${rounds} (same sandbox, same rendered objects):\n${table.join('\n')}\n\nkpi phases (median s):\n${VERBS.map((v) => `  ${v}: ${formatPhases(phases[v])}`).join('\n')}`)
    say(`load at the end: ${fmtLoad(endLoad)}`)
    say('kapp and kubectl have no rollback (v1 applied again); Helm upgrades no CRD (applied first by kubectl); kubectl prunes nothing; install is from a clean cluster.')
    const result = {ok: true, commit, machine, endLoad, rounds, gateS, settleS, tools: flows.map((f) => f.name), medians_s: Object.fromEntries(Object.entries(medians).map(([k, v]) => [k, Object.fromEntries(Object.entries(v).map(([x, ms]) => [x, ms / 1000]))])),
      runs_s: Object.fromEntries([...times].map(([k, v]) => [k, Object.fromEntries(Object.entries(v).map(([x, ms]) => [x, ms.map((m) => m / 1000)]))])),
      peak_rss_bytes: peakRss,
      kpi_phases_s: Object.fromEntries(VERBS.map((v) => [v, Object.fromEntries(Object.entries(phases[v]).map(([k, ms]) => [k, ms / 1000]))]))}
    if (!quick) {
      // a run of some tools keeps its own files: upgrade-kpi-helm.json
      const name = only ? `upgrade-${flows.map((f) => f.name).join('-')}` : 'upgrade'
      await writeFile(join(REPO_ROOT, 'bench', 'results', `${name}.json`), `${JSON.stringify(result, null, 2)}\n`)
      await writeFile(join(REPO_ROOT, 'bench', 'results', `${name}.md`), md)
      say(`written: bench/results/${name}.json, bench/results/${name}.md`)
    }
    if (json) console.log(JSON.stringify(result))
  } finally {
    await run.finish()
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e)
  process.exitCode = 1
})
