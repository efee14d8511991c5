/**
 * What bin/run.js starts: oclif's execute, from the same build as the commands. `npm run build`
 * bundles this file and every command (scripts/bundle.mjs) so that oclif and the commands' code
 * load as a few files, with oclif in a chunk they share: one instance, as the commands need.
 */
export {execute} from '@oclif/core'
