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

type CommandModule = {default: unknown}

/** Each id's loader as a getter: oclif reads `COMMANDS[id]` for the one command it runs. */
function lazily(loaders: Record<string, () => CommandModule>): Record<string, unknown> {
  const out = {}
  for (const [id, load] of Object.entries(loaders)) Object.defineProperty(out, id, {enumerable: true, get: () => load().default})
  return out
}

// each require() names its file, which is what lets esbuild bundle it to be evaluated on first use
export const COMMANDS = lazily({
  'bundle:import-kp': () => require('../commands/bundle/import-kp.js'),
  'bundle:lint': () => require('../commands/bundle/lint.js'),
  'bundle:lock': () => require('../commands/bundle/lock.js'),
  'bundle:push': () => require('../commands/bundle/push.js'),
  demo: () => require('../commands/demo.js'),
  diff: () => require('../commands/diff.js'),
  history: () => require('../commands/history.js'),
  install: () => require('../commands/install.js'),
  relocate: () => require('../commands/relocate.js'),
  render: () => require('../commands/render.js'),
  rollback: () => require('../commands/rollback.js'),
  'sandbox:down': () => require('../commands/sandbox/down.js'),
  'sandbox:up': () => require('../commands/sandbox/up.js'),
  status: () => require('../commands/status.js'),
  'tar:inspect': () => require('../commands/tar/inspect.js'),
  'tar:verify': () => require('../commands/tar/verify.js'),
  upgrade: () => require('../commands/upgrade.js'),
  'values:schema': () => require('../commands/values/schema.js'),
  version: () => require('../commands/version.js'),
})
