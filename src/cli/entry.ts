/**
 * What bin/run.js starts: oclif's execute and every command, as one module. `npm run build`
 * bundles it into one CommonJS file (scripts/bundle.mjs), which bin/run.js compiles with V8's
 * code cache; oclif finds the commands here (package.json: oclif.commands, strategy "explicit")
 * rather than by reading a directory. Ids are the commands' words joined by ":", as oclif names
 * them; test/cli-entry.test.ts holds this list to src/commands/.
 *
 * Each command is a getter that require()s its module: esbuild bundles a required module (and
 * what it imports) to be evaluated on first use, so a command evaluates its own code and not
 * every other command's (render's values schema, the sandbox, the Kubernetes client), as the
 * chunks of an ES module bundle did (imported statically instead, every run evaluated all of
 * them: `kpi version` held 1.2 MiB more of V8's old space). Outside the bundle (tsc's dist/,
 * tests on src/) there is no require: the ids are what is read there.
 */
export {execute} from '@oclif/core'

const command = (m: {default: unknown}): unknown => m.default

export const COMMANDS = {
  get 'bundle:import-kp'() {
    return command(require('../commands/bundle/import-kp.js'))
  },
  get 'bundle:lint'() {
    return command(require('../commands/bundle/lint.js'))
  },
  get 'bundle:lock'() {
    return command(require('../commands/bundle/lock.js'))
  },
  get 'bundle:push'() {
    return command(require('../commands/bundle/push.js'))
  },
  get demo() {
    return command(require('../commands/demo.js'))
  },
  get diff() {
    return command(require('../commands/diff.js'))
  },
  get history() {
    return command(require('../commands/history.js'))
  },
  get install() {
    return command(require('../commands/install.js'))
  },
  get relocate() {
    return command(require('../commands/relocate.js'))
  },
  get render() {
    return command(require('../commands/render.js'))
  },
  get rollback() {
    return command(require('../commands/rollback.js'))
  },
  get 'sandbox:down'() {
    return command(require('../commands/sandbox/down.js'))
  },
  get 'sandbox:up'() {
    return command(require('../commands/sandbox/up.js'))
  },
  get status() {
    return command(require('../commands/status.js'))
  },
  get 'tar:inspect'() {
    return command(require('../commands/tar/inspect.js'))
  },
  get 'tar:verify'() {
    return command(require('../commands/tar/verify.js'))
  },
  get upgrade() {
    return command(require('../commands/upgrade.js'))
  },
  get 'values:schema'() {
    return command(require('../commands/values/schema.js'))
  },
  get version() {
    return command(require('../commands/version.js'))
  },
}
