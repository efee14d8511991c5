import {Flags} from '@oclif/core'
import {formatDuration} from '../apply/stage.js'
import {upgrade, type UpgradeResult} from '../apply/upgrade.js'
import {KpiCommand} from '../cli/base.js'
import {kubeFlags, withKube} from '../cli/kube.js'
import {inputFlags, loadInputs, operationFlags, credentialNote, operationOptions, summaryLines} from '../cli/operation.js'
import {progressMode, withProgress} from '../cli/progress.js'

export default class Upgrade extends KpiCommand {
  static override description = `Upgrade the installed platform to a new lock and values, stage by stage, gated on health

Preflight as install (cluster, permissions, each image the deployed revision does not already run
in the registry, with the values' credentials), plus: the platform version may not go down (--allow-downgrade; the same version with new values is fine), and no CRD may drop a
version objects are still stored in. Then the stages in order, each waiting until its objects are
ready; what the deployed revision had and the new one lacks is deleted last, once all are healthy
(CRDs and namespaces are never deleted). When a stage fails its gate, the deployed revision is
applied again stage by stage and gated too (--no-rollback leaves the failure for inspection); the
failed revision and the rollback are both recorded (kpi history) and the command exits 12 naming
the failing object, its condition and recent events. One operation at a time: a Lease in
kpi-system; an operation whose kpi died is finished by the next upgrade or rollback.`

  static override examples = [
    '<%= config.bin %> upgrade -b lock-1.1.0.yaml -f values.yaml',
    '<%= config.bin %> upgrade -b lock-1.1.0.yaml -f values.yaml --timeout 10m --no-rollback',
  ]

  static override flags = {
    ...inputFlags,
    ...operationFlags,
    'allow-downgrade': Flags.boolean({description: 'allow a lock whose platform version is older than the installed one', default: false}),
    rollback: Flags.boolean({description: 'roll back by itself when a stage fails its gate (--no-rollback: leave it for inspection)', default: true, allowNo: true}),
    ...kubeFlags,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Upgrade)
    const op = operationOptions(flags)
    const {lock, values, render, registryOptions} = await loadInputs(flags)
    const result = await withKube(flags, (kube) =>
      withProgress(progressMode(flags), `Upgrading to ${lock.metadata.name} ${lock.metadata.version} (kpack ${lock.kpack.version}) on ${kube.server}`, (onEvent) =>
        upgrade({
          kube, lock, values, render, ...op, allowDowngrade: flags['allow-downgrade'], rollback: flags.rollback,
          kpiVersion: this.config.version, onEvent, registryOptions,
        })))
    this.report(flags.json, result)
  }

  private report(json: boolean, r: UpgradeResult): void {
    if (json) {
      this.log(JSON.stringify({ok: true, ...r}))
      return
    }
    if (r.upToDate) {
      this.log(`${r.name} ${r.version} is deployed with these inputs (revision ${r.revision}): nothing to upgrade; ${r.changedObjects.length} drifted objects corrected`)
      const note = credentialNote(r.changedObjects, r.revision)
      if (note) this.log(note)
    } else {
      this.log(`Upgraded ${r.name} ${r.from.version} (kpack ${r.from.kpackVersion}, revision ${r.from.revision}) to ${r.version} (kpack ${r.kpackVersion}) as revision ${r.revision} in ${formatDuration(r.durationMs)}`)
      if (r.interrupted) this.log(`  revision ${r.interrupted} had been interrupted; recorded as failed`)
    }
    for (const l of summaryLines(r)) this.log(l)
  }
}
