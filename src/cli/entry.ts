/**
 * What bin/run.js starts: oclif's execute and every command, as one module. `npm run build`
 * bundles it into one CommonJS file (scripts/bundle.mjs), which bin/run.js compiles with V8's
 * code cache; oclif finds the commands here (package.json: oclif.commands, strategy "explicit")
 * rather than by reading a directory. Ids are the commands' words joined by ":", as oclif names
 * them; test/cli-entry.test.ts holds this list to src/commands/.
 */
import BundleImportKp from '../commands/bundle/import-kp.js'
import BundleLint from '../commands/bundle/lint.js'
import BundleLock from '../commands/bundle/lock.js'
import BundlePush from '../commands/bundle/push.js'
import Demo from '../commands/demo.js'
import Diff from '../commands/diff.js'
import History from '../commands/history.js'
import Install from '../commands/install.js'
import Relocate from '../commands/relocate.js'
import Render from '../commands/render.js'
import Rollback from '../commands/rollback.js'
import SandboxDown from '../commands/sandbox/down.js'
import SandboxUp from '../commands/sandbox/up.js'
import Status from '../commands/status.js'
import TarInspect from '../commands/tar/inspect.js'
import TarVerify from '../commands/tar/verify.js'
import Upgrade from '../commands/upgrade.js'
import ValuesSchema from '../commands/values/schema.js'
import Version from '../commands/version.js'

export {execute} from '@oclif/core'

export const COMMANDS = {
  'bundle:import-kp': BundleImportKp,
  'bundle:lint': BundleLint,
  'bundle:lock': BundleLock,
  'bundle:push': BundlePush,
  demo: Demo,
  diff: Diff,
  history: History,
  install: Install,
  relocate: Relocate,
  render: Render,
  rollback: Rollback,
  'sandbox:down': SandboxDown,
  'sandbox:up': SandboxUp,
  status: Status,
  'tar:inspect': TarInspect,
  'tar:verify': TarVerify,
  upgrade: Upgrade,
  'values:schema': ValuesSchema,
  version: Version,
}
