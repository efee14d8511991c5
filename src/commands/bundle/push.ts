import {Args, Flags} from '@oclif/core'
import {collectBundleFiles} from '../../archive/bundle-files.js'
import {bundleArtifact, pushBundleArtifact} from '../../bundle/artifact.js'
import {loadBundle} from '../../bundle/load.js'
import {KpiCommand} from '../../cli/base.js'
import {registryClientFromFlags, registryFlags} from '../../cli/registry.js'
import {KpiError, isKpiError} from '../../errors.js'
import {formatReference, parseReference, type ImageRef} from '../../oci/index.js'

export default class BundlePush extends KpiCommand {
  static override description = `Push a bundle directory to a registry as an image (like imgpkg bundles)

The image holds bundle.yaml and the directory's other files (hidden files and anything that looks like a credential are left out, with a warning). It prints REPO:TAG@sha256:<digest>: relocate it with kpi relocate -b REPO@sha256:<digest>, which copies the bundle image and every image it names.`

  static override examples = [
    '<%= config.bin %> bundle push ./build-service --to-repo registry.example/platform/build-service',
    '<%= config.bin %> bundle push ./build-service --to-repo registry.example/platform/build-service:1.4.0 --json',
  ]

  static override args = {
    dir: Args.string({description: 'bundle directory (holding bundle.yaml)', required: true}),
  }

  static override flags = {
    'to-repo': Flags.string({description: 'repository to push to, REGISTRY/REPOSITORY[:TAG] (tag default: the bundle version)', required: true}),
    ...registryFlags,
    // a bundle image is a config and one layer: nothing runs in parallel for the flag to bound
    concurrency: {...registryFlags.concurrency, description: 'accepted as by the other registry commands; a bundle image is two blobs, pushed one after the other'},
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(BundlePush)
    const loaded = await loadBundle(args.dir)
    if (!loaded.dir) throw new KpiError('usage', `${args.dir} is a file: push a bundle directory`, {hint: 'put bundle.yaml (and its files) in a directory'})
    const to = parseToRepo(flags['to-repo'])
    if (to.digest) throw new KpiError('usage', `--to-repo ${flags['to-repo']}: a push names a repository (and tag), not a digest`)
    const tag = to.tag ?? loaded.bundle.metadata.version.replace(/\+/g, '_')
    const warnings: string[] = []
    const files = await collectBundleFiles(loaded, (e) => {
      if (e.type === 'warning') warnings.push(e.message.replace('left out of the archive', 'left out of the bundle image'))
    })
    const artifact = bundleArtifact(loaded.bundle, files)
    const client = await registryClientFromFlags(flags, to.registry)
    try {
      const repo = {registry: to.registry, repository: to.repository}
      const digest = await pushBundleArtifact(client, repo, tag, artifact)
      const image = formatReference({...repo, tag, digest})
      if (flags.json) {
        this.log(JSON.stringify({ok: true, image, digest, files: files.map((f) => f.path), warnings}))
        return
      }
      for (const w of warnings) process.stderr.write(`warning: ${w}\n`)
      this.log(`Pushed ${loaded.bundle.metadata.name} ${loaded.bundle.metadata.version} (${files.length} files) as ${image}`)
    } finally {
      await client.close()
    }
  }
}

/** --to-repo is a flag: a reference that does not parse is a usage error (exit 2) naming it, as relocate's --to-repo is. */
function parseToRepo(toRepo: string): ImageRef {
  try {
    return parseReference(toRepo)
  } catch (e) {
    if (!isKpiError(e)) throw e
    const reason = e.details?.source === 'reference' ? e.details.reason : e.message
    throw new KpiError('usage', `--to-repo "${toRepo}" is not a repository: ${reason}`, {hint: 'write it as REGISTRY[:PORT]/REPOSITORY[:TAG], e.g. registry.example/platform/build-service'})
  }
}
