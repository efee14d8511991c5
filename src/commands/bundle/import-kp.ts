import {resolve} from 'node:path'
import {Args, Flags} from '@oclif/core'
import {loadBundle} from '../../bundle/load.js'
import {importKpDescriptor} from '../../bundle/kp/import.js'
import {bundleFileAt, writeBundle} from '../../bundle/write.js'
import {KpiCommand} from '../../cli/base.js'
import {registryClientFromFlags, registryFlags} from '../../cli/registry.js'
import {KpiError} from '../../errors.js'

export default class BundleImportKp extends KpiCommand {
  static override description = `Make a bundle from a kp DependencyDescriptor (the file kp import -f reads)

Reads kp.kpack.io/v1alpha1, v1alpha3 and v1: lifecycle, stacks, stores and builders, with the default stack and builder added as "default" as kp import does. Tags are resolved to digests against the source registry and stack ids read from the stack images. A descriptor does not name kpack's own images: they (with cert-injection-webhook's, when it has them, and the release name and version, unless given) come from --kpack-from. What a bundle cannot express (ClusterBuildpacks, extra lifecycles, order entries by image) is printed as warnings (and listed in --json), never dropped silently.`

  static override examples = [
    '<%= config.bin %> bundle import-kp descriptor.yaml -o ./build-service --kpack-from ./kpack-0.17',
    '<%= config.bin %> bundle import-kp descriptor.yaml -o bundle.yaml --kpack-from lock.yaml --name build-service --version 1.5.0 --json',
  ]

  static override args = {
    descriptor: Args.string({description: 'kp DependencyDescriptor YAML file', required: true}),
  }

  static override flags = {
    output: Flags.string({char: 'o', description: 'bundle to write: a directory (bundle.yaml in it) or a .yaml file', required: true}),
    'kpack-from': Flags.string({description: 'bundle or lock whose kpack images (and version) the new bundle uses', required: true}),
    name: Flags.string({description: 'release name (default: that of --kpack-from)'}),
    version: Flags.string({description: 'release version, semver (default: that of --kpack-from)'}),
    ...registryFlags,
    // no blobs move here: the flag bounds the tag lookups, as for bundle lock
    concurrency: {...registryFlags.concurrency, description: 'tags looked up in their registries at once'},
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(BundleImportKp)
    // the output must not be the descriptor (or the bundle) it is made from: both would be lost
    for (const [what, from] of [['the descriptor', args.descriptor], ['--kpack-from', flags['kpack-from']]] as const) {
      if (resolve(bundleFileAt(flags.output)) === resolve(from) || resolve(bundleFileAt(flags.output)) === resolve(bundleFileAt(from))) {
        throw new KpiError('usage', `-o ${flags.output} would overwrite ${what} ${from}`, {hint: 'write the bundle to another file or directory'})
      }
    }
    const base = (await loadBundle(flags['kpack-from'], {allowTags: true})).bundle
    const client = await registryClientFromFlags(flags)
    try {
      const r = await importKpDescriptor({
        file: args.descriptor,
        client,
        concurrency: flags.concurrency,
        base: {
          from: `--kpack-from ${flags['kpack-from']}`,
          metadata: {name: flags.name ?? base.metadata.name, version: flags.version ?? base.metadata.version},
          kpack: base.kpack,
          certInjection: base.certInjection,
          lifecycle: base.lifecycle,
        },
      })
      const file = await writeBundle(flags.output, r.bundle)
      if (flags.json) {
        this.log(JSON.stringify({ok: true, bundle: file, apiVersion: r.apiVersion, warnings: r.notes, pinned: r.pinned}))
        return
      }
      for (const n of r.notes) process.stderr.write(`warning: ${args.descriptor}: ${n.path}: ${n.message}\n`)
      const b = r.bundle
      this.log(`Wrote ${file} from ${args.descriptor} (${r.apiVersion}): ${b.stacks.length} stacks, ${b.stores.length} stores, ${b.builders.length} builders; ${r.pinned.length} tags resolved to digests${r.notes.length ? `; ${r.notes.length} warnings above` : ''}`)
    } finally {
      await client.close()
    }
  }
}
