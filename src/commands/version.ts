import {KpiCommand} from '../cli/base.js'

export default class Version extends KpiCommand {
  static override description = 'Print the kpi version'

  static override examples = ['<%= config.bin %> version', '<%= config.bin %> version --json']

  async run(): Promise<void> {
    const {flags} = await this.parse(Version)
    const v = this.config.version
    if (flags.json) this.log(JSON.stringify({ok: true, version: v, node: process.version}))
    else this.log(`kpi ${v} (node ${process.version})`)
  }
}
