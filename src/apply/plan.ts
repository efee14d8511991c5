/**
 * Install stages as data, after kapp's change graph: each stage names the render stages it applies
 * and every object carries the check that says it is ready. A stage starts only when the one
 * before it is ready, so kpack's controller starts with its CRDs established and its configuration
 * in place, and builders are made only from stacks and stores kpack has accepted.
 *
 * Within a stage objects are applied in two waves: namespaces and CRDs first (everything else may
 * live in them or be one of them), then the rest in parallel.
 */
import type {KubeObject, RenderedObject, Stage} from '../render/types.js'

export interface InstallStageDef {
  name: string
  title: string
  renders: Stage[]
}

export const INSTALL_STAGES: readonly InstallStageDef[] = [
  {name: 'crds', title: 'Namespaces and CRDs', renders: ['namespaces', 'crds']},
  {name: 'config', title: 'RBAC and configuration', renders: ['rbac', 'config']},
  {name: 'controllers', title: 'kpack controller and webhook', renders: ['kpack']},
  {name: 'platform', title: 'Lifecycle, stacks and stores', renders: ['lifecycle', 'stacks', 'stores']},
  {name: 'builders', title: 'Builders', renders: ['builders']},
  {name: 'teams', title: 'Teams', renders: ['teams']},
]

/**
 * - `established`: CRD Established
 * - `rollout`: Deployment rolled out and available
 * - `endpoints`: Service has a ready endpoint (the webhook answers)
 * - `kpack-ready`: kpack's Ready condition (skipped with --wait=applied)
 * - `applied`: accepted by the API server is all there is to it
 */
export type CheckKind = 'established' | 'rollout' | 'endpoints' | 'kpack-ready' | 'applied'

export interface PlannedObject {
  stage: Stage
  object: KubeObject
  check: CheckKind
  /** 0: namespaces and CRDs, 1: the rest */
  wave: number
}

export interface PlannedStage {
  name: string
  title: string
  objects: PlannedObject[]
}

/** kpack kinds whose Ready condition says kpack accepted them. */
export const KPACK_READY_KINDS = new Set(['ClusterLifecycle', 'ClusterStack', 'ClusterStore', 'ClusterBuilder', 'Builder', 'ClusterBuildpack', 'Buildpack'])

export const isKpackResource = (o: {apiVersion: string; kind: string}): boolean => o.apiVersion.startsWith('kpack.io/') && KPACK_READY_KINDS.has(o.kind)

export function checkFor(o: KubeObject): CheckKind {
  if (o.kind === 'CustomResourceDefinition') return 'established'
  if (o.kind === 'Deployment' && o.apiVersion === 'apps/v1') return 'rollout'
  if (o.kind === 'Service' && o.apiVersion === 'v1' && (o.spec as {selector?: unknown} | undefined)?.selector) return 'endpoints'
  if (isKpackResource(o)) return 'kpack-ready'
  return 'applied'
}

const waveOf = (o: KubeObject): number => (o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition' ? 0 : 1)

export function planStages(objects: RenderedObject[]): PlannedStage[] {
  const placed = new Set<RenderedObject>()
  const stages = INSTALL_STAGES.map((def) => {
    const mine = objects.filter((o) => def.renders.includes(o.stage))
    mine.forEach((o) => placed.add(o))
    return {
      name: def.name,
      title: def.title,
      objects: mine.map((o) => ({stage: o.stage, object: o.object, check: checkFor(o.object), wave: waveOf(o.object)})),
    }
  })
  const lost = objects.filter((o) => !placed.has(o))
  if (lost.length) {
    // a render stage the installer does not know: a programming error, not the user's
    throw new Error(`render stage(s) ${[...new Set(lost.map((o) => o.stage))].join(', ')} are not in any install stage`)
  }
  return stages
}
