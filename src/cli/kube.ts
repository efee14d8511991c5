/** The flags every cluster-facing command shares, and the target they name. */
import {Flags} from '@oclif/core'
import {createKubeClient, type Kube} from '../kube/client.js'
import type {KubeTarget} from '../kube/config.js'
import {warn} from './registry.js'

export const kubeFlags = {
  kubeconfig: Flags.string({description: 'kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)'}),
  context: Flags.string({description: 'kubeconfig context (default: its current context)'}),
}

export const kubeTarget = (flags: {kubeconfig?: string; context?: string}): KubeTarget => ({
  ...(flags.kubeconfig ? {kubeconfig: flags.kubeconfig} : {}),
  ...(flags.context ? {context: flags.context} : {}),
})

/** The cluster client for a command; says on every run when the kubeconfig skips TLS verification. */
export async function kubeClientFromFlags(flags: {kubeconfig?: string; context?: string; json?: boolean}): Promise<Kube> {
  const kube = await createKubeClient(kubeTarget(flags))
  if (kube.tlsUnverified) {
    warn(flags.json, `the TLS certificate of the Kubernetes API at ${kube.server} is not verified (insecure-skip-tls-verify in the kubeconfig): anyone on the network path can impersonate it`)
  }
  return kube
}

/** Runs `fn` with the command's cluster client, closed whatever happens. */
export async function withKube<T>(flags: {kubeconfig?: string; context?: string; json?: boolean}, fn: (kube: Kube) => Promise<T>): Promise<T> {
  const kube = await kubeClientFromFlags(flags)
  try {
    return await fn(kube)
  } finally {
    kube.close()
  }
}
