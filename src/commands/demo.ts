import {spawn} from 'node:child_process'
import {join} from 'node:path'
import {Flags} from '@oclif/core'
import {KpiCommand} from '../cli/base.js'
import {whileInterruptible} from '../cli/interrupt.js'
import {KpiError} from '../errors.js'
import {packageRoot} from '../package-root.js'
import {runDemo} from '../sandbox/demo.js'

const bin = join(packageRoot(import.meta.url), 'bin', 'run.js')

export default class Demo extends KpiCommand {
  static override description = `Run the demo on the sandbox: the sample platform across an air gap, install, diff, upgrade, a failed upgrade rolled back, rollback

Starts a sandbox (public and air-gapped registries, a control plane running kpack's own controller
and webhook), runs kpi as a user would at every step, and stops the sandbox at the end. Needs root.`

  static override examples = ['<%= config.bin %> demo --dir .run/demo']

  static override flags = {
    dir: Flags.string({description: 'run directory: a new or empty one, or one an earlier demo made (emptied first)', default: join('.run', 'demo')}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Demo)
    await whileInterruptible((signal) => runDemo({dir: flags.dir, signal}, {
      event: (e) => this.log(e.type === 'step' ? `\n=== ${e.title}` : e.message),
      kpi: (args, env, exit = 0) => {
        this.log(`$ kpi ${args.join(' ')}`)
        return new Promise((resolve, reject) => {
          const child = spawn(process.execPath, [bin, ...args], {stdio: 'inherit', env: {...process.env, ...env}})
          // a terminal's Ctrl-C reaches the step itself; a SIGTERM to the demo alone does not
          const stop = () => child.kill('SIGTERM')
          signal.addEventListener('abort', stop, {once: true})
          child.on('close', (code) => {
            signal.removeEventListener('abort', stop)
            if (code === exit) resolve()
            else reject(new KpiError('failed', `demo step failed: kpi ${args[0]} exited with ${code}${exit ? ` (expected ${exit})` : ''}`))
          })
        })
      },
    }))
  }
}
