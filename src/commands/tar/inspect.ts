import {Args} from '@oclif/core'
import {inspectArchive} from '../../archive/inspect.js'
import {KpiCommand} from '../../cli/base.js'
import {formatBytes} from '../../cli/progress.js'

export default class TarInspect extends KpiCommand {
  static override description = 'Show what an air-gap archive holds: bundle, images, platforms, sizes, delta base'

  static override examples = [
    '<%= config.bin %> tar inspect build-service-1.4.0.tar',
    '<%= config.bin %> tar inspect build-service-1.4.0.tar.part001 --json',
  ]

  static override args = {
    file: Args.string({description: 'archive file (the first part, or the name without .partNNN, if split)', required: true}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(TarInspect)
    const s = await inspectArchive(args.file)
    if (flags.json) {
      this.log(JSON.stringify({ok: true, ...s}))
      return
    }
    this.log(`${s.bundle.name} ${s.bundle.version} (${s.bundle.kind}) in ${s.files.length === 1 ? s.file : `${s.files.length} parts`}, ${formatBytes(s.bytes)}`)
    if (s.since) this.log(`delta: leaves out ${s.external} blobs that ${s.since.name} ${s.since.version} already has`)
    const w = Math.max(...s.images.map((i) => i.path.length), 4)
    for (const i of s.images) {
      const platforms = i.platforms.length ? i.platforms.join(', ') : 'platform unknown'
      this.log(`  ${i.path.padEnd(w)}  ${i.ref}`)
      this.log(`  ${''.padEnd(w)}  ${i.digest}  ${platforms}  ${formatBytes(i.bytes)} in ${i.blobs} blobs`)
    }
    this.log(`${s.images.length} images, ${s.manifests} manifests, ${s.blobs} blobs: ${formatBytes(s.archivedBytes)} archived of ${formatBytes(s.uniqueBytes)} unique (${formatBytes(s.totalBytes)} counting shared layers per image)`)
    this.log(`bundle files: ${s.bundle.files.map((f) => f.path).join(', ')}`)
  }
}
