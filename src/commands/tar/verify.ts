import {Args} from '@oclif/core'
import {verifyArchive} from '../../archive/verify.js'
import {KpiCommand} from '../../cli/base.js'
import {KpiError} from '../../errors.js'
import {formatBytes, progressMode, withProgress} from '../../cli/progress.js'

export default class TarVerify extends KpiCommand {
  static override description = 'Check every digest of an air-gap archive and that every image it holds is complete'

  static override examples = [
    '<%= config.bin %> tar verify build-service-1.4.0.tar',
  ]

  static override args = {
    file: Args.string({description: 'archive file (the first part, or the name without .partNNN, if split)', required: true}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(TarVerify)
    const r = await withProgress(progressMode(flags), `Verifying ${args.file}`, (onEvent) => verifyArchive(args.file, {onEvent}))
    if (flags.json) {
      this.log(JSON.stringify({...r, ok: r.ok}))
      if (!r.ok) process.exitCode = new KpiError('integrity', '').exitCode
      return
    }
    if (r.ok) {
      this.log(`ok: ${r.bundle.name} ${r.bundle.version}: ${r.checked.manifests} manifests and ${r.checked.blobs} blobs (${formatBytes(r.checked.bytes)}) match their digests`)
      return
    }
    for (const p of r.problems) {
      process.stderr.write(`${p.problem}: ${p.message}; used by ${p.images.length ? p.images.join(', ') : 'no image'}\n`)
    }
    const first = r.problems[0]!
    throw new KpiError('integrity', `archive ${args.file} is damaged: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}, first ${first.digest} (${first.images.join(', ') || 'no image'})`, {
      hint: 'copy the archive again from where it was made, or write it anew with kpi relocate --to-tar',
    })
  }
}
