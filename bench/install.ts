/**
 * Time to ready: `kpi install` against its peers applying the same rendered YAML on the same sandbox
 * (registries + control plane with KWOK nodes), in one run, alternating rounds from a clean cluster:
 *
 * - kpi:     kpi install -b LOCK -f VALUES --wait=applied (preflight, stages, waits, revision record)
 * - kapp:    kapp deploy -a kpi-bench -f platform.yaml -y (kapp orders CRDs/namespaces first and waits)
 * - kubectl: what a script does by hand: apply namespaces+CRDs (server side), kubectl wait
 *            established, apply the rest, kubectl rollout status of both Deployments
 *
 * kapp comes from scripts/tools.sh (toolPath('kapp'), built from its source snapshot when the Go
 * module proxy refuses carvel.dev); when it is not built the bench says so and compares with kubectl.
 *
 *   npm run build && npx tsx bench/install.ts [--rounds 3]
 */
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseAllDocuments, stringify} from 'yaml'
import {createKubeClient, type Kube} from '../src/kube/client.js'
import type {LiveObject} from '../src/kube/types.js'
import {startSandbox} from '../src/sandbox/sandbox.js'
import {findTool} from '../src/sandbox/tools.js'
import {exec, median, must, secs, teardown} from './lib/cluster.js'
import {fmtLoad, formatMachineFacts, machineFacts} from './lib/machine.js'
import {findKpi, findPeer} from './lib/tools.js'

const KPI = fileURLToPath(new URL('../bin/run.js', import.meta.url))
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 3

async function main(): Promise<void> {
  console.log(formatMachineFacts(machineFacts()))
  const kpiTool = await findKpi(['apply', 'kube', 'revision', 'render'])
  if (kpiTool.note) console.log(`warning: ${kpiTool.note}`)
  const kappTool = await findPeer('kapp')
  const kapp = kappTool.path
  const kubectl = findTool('kubectl')
  const work = await mkdtemp(join(tmpdir(), 'kpi-bench-install-'))
  console.log(`sandbox in ${work} ...`)
  const sb = await startSandbox({runDir: join(work, 'sandbox'), controlPlane: true, samples: ['v1']})
  const kubeconfig = sb.controlPlane!.kubeconfig
  const env = {...sb.env, KUBECONFIG: kubeconfig}
  const kube = await createKubeClient({kubeconfig})
  try {
    const lock = join(work, 'lock.yaml')
    await must('kpi relocate', exec(process.execPath, [KPI, 'relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', lock, '--ca-cert', sb.caFile], env))
    const values = join(work, 'values.yaml')
    await writeFile(values, stringify({
      registry: {server: sb.airgap.host, repository: 'build-service', username: sb.airgap.username, password: sb.airgap.password},
      caCerts: [await readFile(sb.caFile, 'utf8')],
      teams: [{name: 'payments'}],
      kpack: {webhook: {failurePolicy: 'Ignore'}},
    }))
    const rendered = await must('kpi render', exec(process.execPath, [KPI, 'render', '-b', lock, '-f', values], env))
    const yamlText = rendered.out.slice(rendered.out.indexOf('---'))
    const platformFile = join(work, 'platform.yaml')
    await writeFile(platformFile, yamlText)
    const objects = parseAllDocuments(yamlText).map((d) => d.toJS() as LiveObject).filter(Boolean)
    const first = objects.filter((o) => o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition')
    const rest = objects.filter((o) => !first.includes(o))
    const firstFile = join(work, 'first.yaml')
    const restFile = join(work, 'rest.yaml')
    await writeFile(firstFile, first.map((o) => `---\n${stringify(o)}`).join(''))
    await writeFile(restFile, rest.map((o) => `---\n${stringify(o)}`).join(''))
    const crds = first.filter((o) => o.kind === 'CustomResourceDefinition').map((o) => `crd/${o.metadata.name}`)
    console.log(`${objects.length} objects rendered; ${rounds} rounds, each from a clean cluster`)

    const peers: Array<{name: string; run: () => Promise<number>}> = [
      {
        name: 'kpi install',
        run: async () => (await must('kpi install', exec(process.execPath, [KPI, 'install', '-b', lock, '-f', values, '--ca-cert', sb.caFile, '--wait=applied'], env))).ms,
      },
    ]
    if (kapp) {
      peers.push({name: 'kapp deploy', run: async () => (await must('kapp deploy', exec(kapp, ['deploy', '-a', 'kpi-bench', '-f', platformFile, '-y', '--kubeconfig', kubeconfig], env))).ms})
    } else {
      console.log(`kapp: skipped: ${kappTool.skipped} (scripts/tools.sh cannot build it: the Go module proxy does not serve carvel.dev modules); comparing with kubectl instead`)
    }
    if (kubectl) {
      peers.push({
        name: 'kubectl apply+wait',
        run: async () => {
          const t0 = performance.now()
          const k = (...a: string[]) => must(`kubectl ${a[0]}`, exec(kubectl, ['--kubeconfig', kubeconfig, ...a], env))
          await k('apply', '--server-side', '--field-manager', 'kubectl-bench', '-f', firstFile)
          await k('wait', '--for', 'condition=Established', '--timeout', '300s', ...crds)
          await k('apply', '--server-side', '--field-manager', 'kubectl-bench', '-f', restFile)
          await k('rollout', 'status', '-n', 'kpack', '--timeout', '300s', 'deployment/kpack-controller')
          await k('rollout', 'status', '-n', 'kpack', '--timeout', '300s', 'deployment/kpack-webhook')
          return performance.now() - t0
        },
      })
    } else {
      console.log('kubectl: not built (run bash scripts/tools.sh peers)')
    }

    const times = new Map<string, number[]>(peers.map((p) => [p.name, []]))
    for (let round = 1; round <= rounds; round++) {
      // alternate who goes first, so neither always meets a warmer apiserver
      const order = round % 2 ? peers : [...peers].reverse()
      for (const p of order) {
        await teardown(kube, objects, [{apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-bench', namespace: 'default'}])
        const ms = await p.run()
        times.get(p.name)!.push(ms)
        console.log(`  round ${round}: ${p.name.padEnd(20)} ${secs(ms)}`)
      }
    }
    await teardown(kube, objects, [{apiVersion: 'v1', kind: 'ConfigMap', name: 'kpi-bench', namespace: 'default'}])

    const kpiMs = median(times.get('kpi install')!)
    console.log(`\ntime to ready, median of ${rounds} (clean cluster each time):`)
    for (const p of peers) {
      const m = median(times.get(p.name)!)
      const ratio = p.name === 'kpi install' ? '' : `   kpi/${p.name.split(' ')[0]} = ${(kpiMs / m).toFixed(2)}x`
      console.log(`  ${p.name.padEnd(20)} ${secs(m)}   (${times.get(p.name)!.map(secs).join(', ')})${ratio}`)
    }
    console.log(`load at the end: ${fmtLoad(machineFacts().loadavg)}`)
    console.log('kpi install also runs preflight (access reviews, every image HEADed in the registry), waits for the webhook endpoints and writes the revision record.')
  } finally {
    kube.close()
    await sb.stop()
  }
  await rm(work, {recursive: true, force: true})
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e)
  process.exitCode = 1
})
