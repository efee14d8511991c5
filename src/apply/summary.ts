/** What install, upgrade and rollback report about the objects they applied. */
import type {WaitMode} from '../revision/record.js'
import type {Change} from './changeset.js'
import type {ExecuteResult} from './executor.js'

export interface OperationSummary {
  stages: Array<{name: string; title: string; objects: number; changed: number; durationMs: number}>
  objects: {total: number; created: number; changed: number; unchanged: number}
  /** every object created or changed, `Kind namespace/name` */
  changedObjects: Array<{object: string; action: 'created' | 'changed'}>
  /** objects of the previous revision deleted at the end */
  pruned: string[]
  /** objects of the previous revision kept on purpose (CRDs, namespaces), with why */
  kept: string[]
  /** fields taken over from other field managers */
  conflicts: string[]
  /** `checked`, or `not-checked` with --wait=applied, listing the kpack resources not checked */
  kpackReadiness: {checked: boolean; notChecked: string[]}
}

export function summarize(r: ExecuteResult, wait: WaitMode): OperationSummary {
  const all: Change[] = r.stages.flatMap((s) => s.changes)
  const count = (a: Change['action']) => all.filter((c) => c.action === a).length
  return {
    stages: r.stages.map((s) => ({name: s.name, title: s.title, objects: s.objects, changed: s.changes.filter((c) => c.action !== 'unchanged').length, durationMs: s.durationMs})),
    objects: {total: all.length, created: count('create'), changed: count('update'), unchanged: count('unchanged')},
    changedObjects: all.filter((c) => c.action !== 'unchanged').map((c) => ({object: c.object, action: c.action === 'create' ? 'created' as const : 'changed' as const})),
    pruned: r.pruned,
    kept: r.kept,
    conflicts: r.stages.flatMap((s) => s.conflicts),
    kpackReadiness: {checked: wait === 'ready', notChecked: r.stages.flatMap((s) => s.notChecked)},
  }
}
