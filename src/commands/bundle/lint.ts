import {Args} from '@oclif/core'
import {bundleImages, checkBundle, formatProblem, problemsError} from '../../bundle/index.js'
import {KpiCommand} from '../../cli/base.js'

export default class BundleLint extends KpiCommand {
  static override description = 'Check a bundle manifest: shape, pinned digests, names and references between stacks, stores and builders'

  static override examples = [
    '<%= config.bin %> bundle lint ./build-service-1.4.0',
    '<%= config.bin %> bundle lint bundle.yaml --json',
  ]

  static override args = {
    bundle: Args.string({description: 'bundle directory (holding bundle.yaml) or bundle YAML file', required: true}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(BundleLint)
    const r = await checkBundle(args.bundle)
    if (flags.json) {
      const b = r.ok ? r.loaded.bundle : r.bundle
      const meta = b?.metadata as {name?: unknown; version?: unknown} | undefined
      this.log(JSON.stringify({
        ok: r.ok,
        file: r.file,
        name: typeof meta?.name === 'string' ? meta.name : undefined,
        version: typeof meta?.version === 'string' ? meta.version : undefined,
        images: r.ok ? bundleImages(r.loaded.bundle) : [],
        problems: r.problems,
        warnings: r.warnings,
      }))
      // The JSON above is the whole answer; only the exit code remains to be said.
      if (!r.ok) process.exitCode = problemsError(r.file, r.problems).exitCode
      return
    }
    for (const w of r.warnings) process.stderr.write(`warning: ${formatProblem(w)}\n`)
    if (!r.ok) throw problemsError(r.file, r.problems, r.warnings)
    const b = r.loaded.bundle
    const n = bundleImages(b).length
    this.log(`ok: ${b.metadata.name} ${b.metadata.version}: ${n} images, ${b.stacks.length} stacks, ${b.stores.length} stores, ${b.builders.length} builders`)
  }
}
