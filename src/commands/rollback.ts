import {Args} from '@oclif/core'
import {rollback, type RollbackResult} from '../apply/rollback-action.js'
import {formatDuration} from '../apply/stage.js'
import {KpiCommand} from '../cli/base.js'
import {kubeFlags, withKube} from '../cli/kube.js'
import {operationFlags, operationOptions, registryOptions, summaryLines} from '../cli/operation.js'
import {registryFlags} from '../cli/registry.js'
import {KpiError} from '../errors.js'
import {progressMode, withProgress} from '../cli/progress.js'

export default class Rollback extends KpiCommand {
  static override description = `Put an earlier revision back, stage by stage, gated on health

REVISION defaults to the revision deployed before the current one (kpi history lists them); after
an operation that failed and was left as it is (kpi upgrade --no-rollback) or was interrupted, to
the deployed one, whose state that operation changed in part. Its
objects are applied again in stage order, each stage waiting until ready, then what it did not
have is deleted; the result is recorded as a new revision ("rollback to N").

Secrets: revision records hold no credentials, so Secret data is never rolled back: each Secret
keeps the data it has in the cluster now (the live credentials stay). A Secret the revision needs
that is no longer in the cluster is refused before anything changes.`

  static override examples = [
    '<%= config.bin %> rollback',
    '<%= config.bin %> rollback 1 --timeout 10m',
  ]

  static override args = {
    revision: Args.string({description: 'the revision to go back to (default: the one before the deployed one; the deployed one after a failed or interrupted operation)'}),
  }

  static override flags = {
    ...operationFlags,
    'plain-http': registryFlags['plain-http'],
    'insecure-registry': registryFlags['insecure-registry'],
    ...kubeFlags,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Rollback)
    const op = operationOptions(flags)
    let revision: number | undefined
    if (args.revision !== undefined) {
      // digits only: Number() would take 0x2, 1e1 and " 3" for revisions
      revision = /^\d+$/.test(args.revision) ? Number(args.revision) : NaN
      if (!Number.isInteger(revision) || revision < 1) throw new KpiError('usage', `REVISION "${args.revision}" is not a revision number`, {hint: 'kpi history lists the revisions'})
    }
    const result = await withKube(flags, (kube) =>
      withProgress(progressMode(flags), `Rolling back${revision ? ` to revision ${revision}` : ''} on ${kube.server}`, async (onEvent) =>
        rollback({kube, revision, ...op, kpiVersion: this.config.version, onEvent, registryOptions: await registryOptions(flags)})))
    this.report(flags.json, result)
  }

  private report(json: boolean, r: RollbackResult): void {
    if (json) {
      this.log(JSON.stringify({ok: true, ...r}))
      return
    }
    this.log(`Rolled back to revision ${r.rollbackTo}: ${r.name} ${r.version} (kpack ${r.kpackVersion}), recorded as revision ${r.revision}, in ${formatDuration(r.durationMs)}`)
    if (r.interrupted) this.log(`  revision ${r.interrupted} had been interrupted; recorded as failed`)
    for (const l of summaryLines(r)) this.log(l)
  }
}
