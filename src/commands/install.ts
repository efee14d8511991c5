import {Flags} from '@oclif/core'
import {install, installStageTitles, type InstallResult} from '../apply/install.js'
import {formatDuration} from '../apply/stage.js'
import {KpiCommand} from '../cli/base.js'
import {kubeFlags, withKube} from '../cli/kube.js'
import {inputFlags, loadInputs, operationFlags, credentialNote, operationOptions} from '../cli/operation.js'
import {progressMode, withStagedProgress} from '../cli/progress.js'

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
    ...inputFlags,
    ...operationFlags,
    adopt: Flags.boolean({description: 'take over a kpack installation kpi did not make', default: false}),
    ...kubeFlags,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Install)
    const op = operationOptions(flags)
    const {lock, values, render, registryOptions} = await loadInputs(flags)
    const result = await withKube(flags, (kube) =>
      withStagedProgress(progressMode(flags), `Installing ${lock.metadata.name} ${lock.metadata.version} (kpack ${lock.kpack.version}) on ${kube.server}`, installStageTitles(render), (onEvent) =>
        install({kube, lock, values, render, ...op, adopt: flags.adopt, kpiVersion: this.config.version, onEvent, registryOptions})))
    this.report(flags.json, result)
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
      const note = credentialNote(r.changedObjects, r.revision)
      if (note) this.log(note)
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
