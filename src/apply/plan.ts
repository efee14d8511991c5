/**
 * Install stages as data, after kapp's change graph: each stage names the render stages it applies
 * and every object carries the check that says it is ready. A stage starts only when the one
 * before it is ready, so kpack's controller starts with its CRDs established and its configuration
 * in place, and builders are made only from stacks and stores kpack has accepted.
 *
 * Within a stage objects are applied in two waves: namespaces and CRDs first (everything else may
 * live in them or be one of them), then the rest in parallel.
 */
import {checkFor, type CheckKind} from '../kube/checks.js'
import type {KubeObject, RenderedObject, Stage} from '../render/types.js'
import {secretReaders} from './secret-versions.js'

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

export type {CheckKind} from '../kube/checks.js'

export interface PlannedObject {
  stage: Stage
  object: KubeObject
  check: CheckKind
  /** 0: namespaces and CRDs, 1: the rest */
  wave: number
  /** a Deployment's: the rendered Secrets its pods read (secret-versions.ts), for decide() */
  secrets?: string[]
}

export interface PlannedStage {
  name: string
  title: string
  objects: PlannedObject[]
}

export const waveOf = (o: {kind: string}): number => (o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition' ? 0 : 1)

/**
 * A Service whose pods can only come from rendered Deployments that all want 0 replicas (values
 * `replicas: 0`: cert-injection-webhook switched off for a while) never has an endpoint: judged by
 * its endpoints its stage would wait out its timeout, and an upgrade roll back. It is applied and
 * not waited for; its Deployments' rollouts (their old pods gone) still are.
 */
function neverBacked(service: KubeObject, objects: RenderedObject[]): boolean {
  const selector = (service.spec as {selector?: Record<string, string>} | undefined)?.selector
  if (!selector || !Object.keys(selector).length) return false
  const backing = objects.map((o) => o.object).filter((d) => {
    if (d.apiVersion !== 'apps/v1' || d.kind !== 'Deployment' || d.metadata.namespace !== service.metadata.namespace) return false
    const labels = (d.spec as {template?: {metadata?: {labels?: Record<string, string>}}} | undefined)?.template?.metadata?.labels ?? {}
    return Object.entries(selector).every(([k, v]) => labels[k] === v)
  })
  return backing.length > 0 && backing.every((d) => (d.spec as {replicas?: number} | undefined)?.replicas === 0)
}

const checkOf = (o: KubeObject, objects: RenderedObject[]): CheckKind => {
  const check = checkFor(o)
  return check === 'endpoints' && neverBacked(o, objects) ? 'applied' : check
}

export function planStages(objects: RenderedObject[]): PlannedStage[] {
  const placed = new Set<RenderedObject>()
  const readers = secretReaders(objects)
  const stageIndex = (stage: Stage) => INSTALL_STAGES.findIndex((s) => s.renders.includes(stage))
  const secretStage = new Map(objects.filter((o) => o.object.kind === 'Secret').map((o) => [`${o.object.metadata.namespace}/${o.object.metadata.name}`, stageIndex(o.stage)]))
  // only a Secret an earlier stage applies has its new version when the reader is applied
  const secretsOf = (o: RenderedObject) => readers.get(`${o.object.metadata.namespace}/${o.object.metadata.name}`)
    ?.filter((name) => secretStage.get(`${o.object.metadata.namespace}/${name}`)! < stageIndex(o.stage))
  const stages = INSTALL_STAGES.map((def) => {
    const mine = objects.filter((o) => def.renders.includes(o.stage))
    mine.forEach((o) => placed.add(o))
    return {
      name: def.name,
      title: def.title,
      objects: mine.map((o) => {
        const secrets = secretsOf(o)
        return {stage: o.stage, object: o.object, check: checkOf(o.object, objects), wave: waveOf(o.object), ...(secrets?.length ? {secrets} : {})}
      }),
    }
  })
  const lost = objects.filter((o) => !placed.has(o))
  if (lost.length) {
    // a render stage the installer does not know: a programming error, not the user's
    throw new Error(`render stage(s) ${[...new Set(lost.map((o) => o.stage))].join(', ')} are not in any install stage`)
  }
  return stages
}

/** The install stage that applies objects of a render stage (deletions are placed by it). */
export function installStageOf(stage: Stage): string {
  return INSTALL_STAGES.find((s) => s.renders.includes(stage))!.name
}
