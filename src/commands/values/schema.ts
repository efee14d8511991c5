import {KpiCommand} from '../../cli/base.js'
import {valuesSchema} from '../../values/schema.js'

export default class ValuesSchema extends KpiCommand {
  static override description = 'Print the JSON schema of the values file (kpi render/install -f)'

  static override examples = [
    '<%= config.bin %> values schema > values.schema.json',
  ]

  async run(): Promise<void> {
    await this.parse(ValuesSchema)
    // the schema is JSON either way; --json changes nothing but is accepted like everywhere
    process.stdout.write(JSON.stringify(valuesSchema, null, 2) + '\n')
  }
}
