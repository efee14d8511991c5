import {Args, Flags} from '@oclif/core'
import {loadBundle} from '../../bundle/load.js'
import {pinBundle} from '../../bundle/pin.js'
import {rewriteBundleRefs, writeBundle} from '../../bundle/write.js'
import {KpiCommand} from '../../cli/base.js'
import {registryClientFromFlags, registryFlags} from '../../cli/registry.js'

export default class BundleLock extends KpiCommand {
  static override description = `Pin a bundle written with tags: resolve every tag to its digest (as kbld does)

Each reference without a digest is looked up in its registry and written as registry/repository:tag@sha256:<digest>; references that carry a digest are kept. When an image cannot be resolved, every such image is named and nothing is written.`

  static override examples = [
    '<%= config.bin %> bundle lock ./build-service',
    '<%= config.bin %> bundle lock bundle.yaml -o pinned/ --json',
  ]

  static override args = {
    bundle: Args.string({description: 'bundle directory (holding bundle.yaml) or bundle YAML file', required: true}),
  }

  static override flags = {
    output: Flags.string({char: 'o', description: 'write the pinned bundle here (a directory or a .yaml file; default: rewrite the bundle in place)'}),
    ...registryFlags,
    // no blobs move here: the flag bounds the tag lookups
    concurrency: {...registryFlags.concurrency, description: 'tags looked up in their registries at once'},
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(BundleLock)
    const loaded = await loadBundle(args.bundle, {allowTags: true})
    const client = await registryClientFromFlags(flags)
    try {
      const r = await pinBundle(loaded.bundle, client, {concurrency: flags.concurrency})
      // in place: the file it was read from, whatever its name (writeBundle takes a name without .yaml
      // for a directory), with only the references it pinned changed
      const file = flags.output ? await writeBundle(flags.output, r.bundle) : await rewriteBundleRefs(loaded.file, r.bundle, r.pinned)
      if (flags.json) {
        this.log(JSON.stringify({ok: true, bundle: file, pinned: r.pinned}))
        return
      }
      for (const p of r.pinned) process.stderr.write(`  ${p.path}: ${p.to}\n`)
      this.log(`Wrote ${file}: ${r.pinned.length} tags resolved to digests`)
    } finally {
      await client.close()
    }
  }
}
