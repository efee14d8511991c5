import {history} from '../apply/history.js'
import {KpiCommand} from '../cli/base.js'
import {kubeFlags, withKube} from '../cli/kube.js'

export default class History extends KpiCommand {
  static override description = `List the platform's revisions kept in the cluster: revision, time, platform and kpack version, status, description

Revisions are Secrets in namespace kpi-system (at most --history-max of them, 10 by default; the
deployed one is always kept). A failed revision says why.`

  static override examples = ['<%= config.bin %> history', '<%= config.bin %> history --json']

  static override flags = {...kubeFlags}

  async run(): Promise<void> {
    const {flags} = await this.parse(History)
    const rows = await withKube(flags, history)
    if (flags.json) {
      this.log(JSON.stringify({ok: true, revisions: rows}))
      return
    }
    const table = [['REVISION', 'UPDATED', 'VERSION', 'KPACK', 'STATUS', 'DESCRIPTION'], ...rows.map((r) => [String(r.revision), r.updated, r.version, r.kpackVersion, r.status, r.description])]
    const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)))
    for (const row of table) this.log(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    for (const r of rows.filter((x) => x.message)) this.log(`  revision ${r.revision}: ${r.message}`)
  }
}
