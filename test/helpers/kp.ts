/**
 * A kp DependencyDescriptor (kp.kpack.io/v1alpha3) naming a sample's images by tag, as a platform
 * team's descriptor names the public images: one stack "jammy", the store "default", the lifecycle,
 * one builder "base", and kp's defaults pointing at them.
 */
import type {Bundle} from '../../src/bundle/types.js'

/** `repo/name:tag@sha256:…` without its digest */
export const tagOf = (ref: string): string => ref.slice(0, ref.indexOf('@'))

export function kpDescriptorV1alpha3(sample: Bundle): Record<string, unknown> {
  const stack = sample.stacks[0]!
  return {
    apiVersion: 'kp.kpack.io/v1alpha3',
    kind: 'DependencyDescriptor',
    defaultClusterStack: 'jammy',
    defaultClusterBuilder: 'base',
    lifecycle: {image: tagOf(sample.lifecycle.image)},
    clusterStores: [{name: 'default', sources: sample.stores[0]!.sources.map((s) => ({image: tagOf(s.image)}))}],
    clusterStacks: [{name: 'jammy', buildImage: {image: tagOf(stack.buildImage)}, runImage: {image: tagOf(stack.runImage)}}],
    clusterBuilders: [{name: 'base', clusterStack: 'jammy', clusterStore: 'default', order: sample.builders[0]!.order}],
  }
}
