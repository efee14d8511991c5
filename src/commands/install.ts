import {Flags} from '@oclif/core'
import {install, installStageTitles, DEFAULT_STAGE_TIMEOUT_MS, type InstallResult} from '../apply/install.js'
import {formatDuration} from '../apply/stage.js'
import {loadLock} from '../bundle/source.js'
import {KpiCommand} from '../cli/base.js'
import {parseDuration} from '../cli/duration.js'
import {kubeClientFromFlags, kubeFlags} from '../cli/kube.js'
import {plainHttpNotice, readCaCerts, registryFlags, tlsSkipFromFlags} from '../cli/registry.js'
import {progressMode, withStagedProgress} from '../cli/progress.js'
import {renderPlatform} from '../render/render.js'
import {loadValues} from '../values/load.js'

export default class Install extends KpiCommand {
  static override description = `Install the platform on a cluster, stage by stage, and wait until it is ready

Stages: preflight (cluster version, permissions, every image at its digest in the registry with the
values' credentials, no other installation) -> namespaces and CRDs (established) -> RBAC and
configuration -> kpack controller and webhook (rolled out, webhook endpoints ready) -> lifecycle,
stacks and stores -> builders -> teams. kpack resources are waited for until kpack says Ready
(--wait=ready); --wait=applied skips that check, for clusters where no kpack controller runs.

The revision is recorded in the cluster (Secret kpi.platform.v1 in namespace kpi-system). Running
install again with the same inputs changes nothing; after an interrupted install it resumes.`

  static override examples = [
    '<%= config.bin %> install -b lock.yaml -f values.yaml',
    '<%= config.bin %> install -b lock.yaml -f values.yaml --wait=applied --timeout 10m --context prod',
  ]

  static override flags = {
    bundle: Flags.string({char: 'b', description: 'relocated lock (kpi relocate --lock-output), or a relocated bundle image REPO@sha256:<digest>', required: true}),
    values: Flags.string({char: 'f', description: 'values file (see docs/values.md)', required: true}),
    wait: Flags.string({
      description: 'ready: wait for kpack\'s Ready condition on stacks, stores and builders; applied: do not (no kpack controller runs)',
      options: ['ready', 'applied'],
      default: 'ready',
    }),
    timeout: Flags.string({description: 'how long each stage may take to become ready (e.g. 90s, 5m, 1h)', default: '5m'}),
    adopt: Flags.boolean({description: 'take over a kpack installation kpi did not make', default: false}),
    ...kubeFlags,
    'plain-http': registryFlags['plain-http'],
    'insecure-registry': registryFlags['insecure-registry'],
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Install)
    const timeoutMs = parseDuration(flags.timeout, '--timeout') ?? DEFAULT_STAGE_TIMEOUT_MS
    const values = await loadValues(flags.values)
    const plain = new Set([...(flags['plain-http'] ?? []), ...(process.env.KPI_PLAIN_HTTP?.split(',').filter(Boolean) ?? [])])
    // the registry CAs the cluster will trust (values) and those given here
    const caCerts = [...values.caCerts, ...(await readCaCerts(flags['ca-cert']))]
    const registryOptions = {caCerts, ...tlsSkipFromFlags(flags), plainHttp: (r: string) => plain.has(r), onPlainHttp: plainHttpNotice(flags.json)}
    const {bundle: lock} = await loadLock(flags.bundle, registryOptions)
    const render = renderPlatform(lock, values)
    const kube = await kubeClientFromFlags(flags)
    try {
      const mode = progressMode(flags)
      const result = await withStagedProgress(mode, `Installing ${lock.metadata.name} ${lock.metadata.version} (kpack ${lock.kpack.version}) on ${kube.server}`, installStageTitles(render), (onEvent) =>
        install({
          kube, lock, values, render, wait: flags.wait as 'ready' | 'applied', timeoutMs, adopt: flags.adopt,
          kpiVersion: this.config.version, onEvent,
          registryOptions,
        }))
      this.report(flags.json, result)
    } finally {
      kube.close()
    }
  }

  private report(json: boolean, r: InstallResult): void {
    if (json) {
      this.log(JSON.stringify({ok: true, ...r}))
      return
    }
    const o = r.objects
    if (r.mode === 'reconcile') {
      this.log(`${r.name} ${r.version} is installed with these inputs (revision ${r.revision}): ${o.changed + o.created} objects changed (${o.unchanged} unchanged)`)
    } else {
      const how = r.mode === 'resume' ? ' (resumed)' : r.mode === 'adopt' ? ' (adopted)' : ''
      this.log(`Installed ${r.name} ${r.version} (kpack ${r.kpackVersion}) as revision ${r.revision}${how} in ${formatDuration(r.durationMs)}`)
      this.log(`  objects: ${o.total} (${o.created} created, ${o.changed} changed, ${o.unchanged} unchanged)`)
    }
    if (r.mode === 'reconcile' && r.changedObjects.length) {
      this.log(`  drift corrected: ${r.changedObjects.map((c) => `${c.object} (${c.action})`).join(', ')}`)
    }
    this.log(`  stages: ${r.stages.map((s) => `${s.name} ${formatDuration(s.durationMs)}`).join(', ')}`)
    for (const c of r.conflicts) this.log(`  ${c}`)
    if (r.kpackReadiness.checked) {
      this.log('  kpack readiness: every stack, store and builder is Ready')
    } else if (r.kpackReadiness.notChecked.length) {
      this.log(`  kpack readiness NOT checked (--wait=applied): ${r.kpackReadiness.notChecked.join(', ')}`)
    }
  }
}
