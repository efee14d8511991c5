import {platformStatus, type PlatformStatus} from '../apply/status.js'
import {EXIT, KpiCommand} from '../cli/base.js'
import {kubeFlags, withKube} from '../cli/kube.js'

export default class Status extends KpiCommand {
  static override description = `Show the installed platform: version, revision and the health of each install stage

Exits 0 when healthy, 11 when not (an object missing, a CRD not established, a Deployment not
available, a kpack resource Ready=False, or the last operation not finished). kpack resources
nobody has reconciled (no kpack controller running) are shown as unknown, which is not unhealthy.`

  static override examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status --context prod --json',
  ]

  static override flags = {...kubeFlags}

  async run(): Promise<void> {
    const {flags} = await this.parse(Status)
    const s = await withKube(flags, platformStatus)
    if (flags.json) this.log(JSON.stringify({ok: s.healthy, ...s}))
    else this.print(s)
    if (!s.healthy) process.exitCode = EXIT.failed
  }

  private print(s: PlatformStatus): void {
    this.log(`${s.name} ${s.version} (kpack ${s.kpackVersion}): revision ${s.revision}, ${s.status} (${s.operation}) at ${s.updatedAt} by kpi ${s.kpiVersion}`)
    if (s.message) this.log(`  ${s.message}`)
    if (s.operationState) {
      this.log(`  ${s.operationState.message}`)
      if (s.operationState.finishWith) this.log(`  finish it with: ${s.operationState.finishWith}`)
    }
    const width = Math.max(...s.stages.map((x) => x.name.length))
    for (const st of s.stages) {
      this.log(`  ${st.name.padEnd(width)}  ${st.health.padEnd(9)}  ${st.summary}`)
      for (const p of st.problems.slice(0, 10)) this.log(`      ${p.object}: ${p.state}: ${p.message}`)
      if (st.problems.length > 10) this.log(`      and ${st.problems.length - 10} more`)
    }
    const k = s.kpack
    if (k.unknown) this.log(`  kpack readiness unknown for ${k.unknown} resource(s): no kpack controller has reconciled them${s.wait === 'applied' ? ' (installed with --wait=applied)' : ''}`)
    this.log(s.verdict)
  }
}
