import {Flags} from '@oclif/core'
import {KpiCommand} from '../../cli/base.js'
import {sandboxDown} from '../../sandbox/updown.js'

export default class SandboxDown extends KpiCommand {
  static override description = `Stop a sandbox started with kpi sandbox up

Stops every process the sandbox started and removes its pods' network namespaces. Safe to run twice,
and after a sandbox whose supervisor was killed.`

  static override examples = ['<%= config.bin %> sandbox down --dir /tmp/kpi-sandbox']

  static override flags = {
    dir: Flags.string({description: 'the directory given to kpi sandbox up', required: true}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(SandboxDown)
    const r = await sandboxDown(flags.dir)
    if (flags.json) this.log(JSON.stringify({ok: true, ...r}))
    else this.log(r.stopped ? `sandbox in ${flags.dir} stopped${r.swept ? ` (${r.swept} leftover processes killed)` : ''}` : `no sandbox running in ${flags.dir}${r.swept ? ` (${r.swept} leftover processes killed)` : ''}`)
  }
}
