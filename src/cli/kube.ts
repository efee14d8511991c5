/** The flags every cluster-facing command shares, and the target they name. */
import {Flags} from '@oclif/core'
import type {KubeTarget} from '../kube/config.js'

export const kubeFlags = {
  kubeconfig: Flags.string({description: 'kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)'}),
  context: Flags.string({description: 'kubeconfig context (default: its current context)'}),
}

export const kubeTarget = (flags: {kubeconfig?: string; context?: string}): KubeTarget => ({
  ...(flags.kubeconfig ? {kubeconfig: flags.kubeconfig} : {}),
  ...(flags.context ? {context: flags.context} : {}),
})
