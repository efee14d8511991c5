import {Flags} from '@oclif/core'
import {KpiCommand} from '../../cli/base.js'
import {whileInterruptible} from '../../cli/interrupt.js'
import {sandboxUp} from '../../sandbox/updown.js'

export default class SandboxUp extends KpiCommand {
  static override description = `Start the local sandbox and leave it running

A "public" registry with the sample platform (v1 and v2 bundles), an "air-gapped" registry (htpasswd
and TLS from a sandbox CA), and a real Kubernetes control plane whose kpack pods run kpack's own
controller and webhook. Returns once everything is ready. DIR/env exports KUBECONFIG, DOCKER_CONFIG,
KPI_PLAIN_HTTP and KPI_SANDBOX_* (registries, credentials, CA, bundle directories); DIR/values.yaml
is a values file for the air-gapped registry that kpi install takes as it is. Needs root (pods run in
network namespaces). Stop it with kpi sandbox down --dir DIR.`

  static override examples = [
    '<%= config.bin %> sandbox up --dir /tmp/kpi-sandbox && . /tmp/kpi-sandbox/env',
  ]

  static override flags = {
    dir: Flags.string({description: 'directory for the sandbox (state, logs, env, values.yaml)', required: true}),
    timeout: Flags.integer({description: 'seconds to wait for the sandbox to become ready', default: 600}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(SandboxUp)
    // Ctrl-C or SIGTERM while it waits: up stops the sandbox it was starting (see sandboxUp)
    const r = await whileInterruptible((signal) => sandboxUp(flags.dir, {timeoutMs: flags.timeout * 1000, signal}))
    if (flags.json) {
      this.log(JSON.stringify({ok: true, dir: r.dir, env: r.envFile, values: r.valuesFile, started: r.started, ...r.state}))
      return
    }
    this.log(r.started ? `sandbox ready in ${((r.state.readyMs ?? 0) / 1000).toFixed(1)}s (supervisor pid ${r.state.pid})` : `sandbox already running (supervisor pid ${r.state.pid})`)
    for (const p of r.state.missingPrograms ?? []) this.log(`not built, its pods are played by KWOK alone: ${p} (run bash scripts/tools.sh)`)
    this.log(`env:    . ${r.envFile}`)
    this.log(`values: ${r.valuesFile}`)
    this.log(`stop:   kpi sandbox down --dir ${r.dir}`)
  }
}
