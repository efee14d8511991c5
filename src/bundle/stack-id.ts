/**
 * A stack's id, read as kp reads it (kpack-cli pkg/stackimage): the `io.buildpacks.stack.id`
 * label of the build image and of the run image, which must agree.
 */
import {KpiError} from '../errors.js'
import {parseReference, readImageConfig, type RegistryClient} from '../oci/index.js'

export const STACK_ID_LABEL = 'io.buildpacks.stack.id'

async function labelOf(client: RegistryClient, ref: string, what: string): Promise<string> {
  const p = parseReference(ref)
  const config = await readImageConfig(client, {registry: p.registry, repository: p.repository}, p.digest ?? p.tag ?? 'latest')
  const id = config.config?.Labels?.[STACK_ID_LABEL]
  if (!id) throw new KpiError('input', `${what} ${ref} is not a stack image: its config has no ${STACK_ID_LABEL} label`, {hint: 'name the stack\'s build and run images'})
  return id
}

/** The stack id both images carry; throws naming the images when they differ or lack it. */
export async function readStackId(client: RegistryClient, stack: {name: string; buildImage: string; runImage: string}): Promise<string> {
  const [build, run] = await Promise.all([
    labelOf(client, stack.buildImage, `stack "${stack.name}": build image`),
    labelOf(client, stack.runImage, `stack "${stack.name}": run image`),
  ])
  if (build !== run) throw new KpiError('input', `stack "${stack.name}": build image stack id "${build}" does not match run image stack id "${run}"`, {hint: 'pair a build and a run image of the same stack'})
  return build
}
