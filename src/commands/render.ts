import {Flags} from '@oclif/core'
import {loadBundle} from '../bundle/load.js'
import {KpiCommand} from '../cli/base.js'
import {renderInputs} from '../cli/operation.js'
import {loadValues} from '../values/load.js'
import {toJsonObjects, toYaml} from '../render/yaml.js'

export default class Render extends KpiCommand {
  static override description = 'Render the platform\'s Kubernetes configuration from a relocated lock and a values file'

  static override examples = [
    '<%= config.bin %> render -b lock.yaml -f values.yaml > platform.yaml',
    '<%= config.bin %> render -b lock.yaml -f values.yaml --json',
  ]

  static override flags = {
    bundle: Flags.string({char: 'b', description: 'relocated lock (kpi relocate --lock-output) or bundle', required: true}),
    values: Flags.string({char: 'f', description: 'values file (see docs/values.md)', required: true}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Render)
    const {bundle} = await loadBundle(flags.bundle)
    const values = await loadValues(flags.values)
    const {objects, warnings} = renderInputs(bundle, flags.bundle, values, flags.values)
    if (flags.json) {
      process.stdout.write(JSON.stringify({ok: true, objects: toJsonObjects(objects), warnings}) + '\n')
      return
    }
    for (const w of warnings) process.stderr.write(`Warning: ${w}\n`)
    process.stdout.write(toYaml(objects))
  }
}
