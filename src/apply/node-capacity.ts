/**
 * Preflight's look at the nodes: a Deployment whose pods ask more of a resource than any node
 * allocates would fail its stage's gate (kube/checks.ts), after the objects before it changed.
 * Said as a warning, not a refusal: an autoscaler may add a node that large once the pod waits.
 * A user who may not list nodes (a namespace admin) gets no check, and no error.
 */
import type {Kube} from '../kube/client.js'
import {neverFits} from '../kube/capacity.js'
import {describeRef} from '../kube/types.js'
import type {KubeObject} from '../render/types.js'
import type {Task} from './preflight.js'

export async function nodeCapacityWarnings(kube: Kube, objects: KubeObject[], task: Task): Promise<string[]> {
  const deployments = objects.filter((o) => o.kind === 'Deployment' && o.apiVersion === 'apps/v1')
  if (!deployments.length) return []
  task('node capacity', 'start')
  const nodes = (await kube.list('v1', 'Node').catch(() => undefined))?.filter((n) => !n.metadata.deletionTimestamp)
  if (!nodes) {
    task('node capacity', 'done', 'nodes not readable with these credentials: not checked')
    return []
  }
  const warnings: string[] = []
  for (const d of deployments) {
    const spec = (d.spec as {template?: {spec?: unknown}} | undefined)?.template?.spec
    const why = neverFits({apiVersion: 'v1', kind: 'Pod', metadata: {name: d.metadata.name}, spec}, nodes)
    if (why) warnings.push(`${describeRef(d)}: no node can run its pods: ${why}; its stage will fail unless an autoscaler adds a node that large`)
  }
  task('node capacity', 'done', warnings.length ? `${warnings.length} Deployment${warnings.length === 1 ? '' : 's'} fit no node` : `every pod fits a node (${nodes.length} node${nodes.length === 1 ? '' : 's'})`)
  return warnings
}
