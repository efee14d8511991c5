import {diff, type DiffResult} from '../apply/diff.js'
import {formatFieldChange} from '../apply/fielddiff.js'
import {EXIT, KpiCommand} from '../cli/base.js'
import {kubeFlags, withKube} from '../cli/kube.js'
import {inputFlags, loadInputs} from '../cli/operation.js'

export default class Diff extends KpiCommand {
  static override description = `Show what kpi upgrade with this lock and values would change, and what kpack would then do to each app Image

Per stage: objects added, changed (field by field; Secret data is never shown) and removed.
Nothing is written: changes are told by server-side dry runs. Then, for every kpack Image in the
cluster, whether kpack will rebuild it (a buildpack its last build used leaves the builder, the
lifecycle changes, or the stack id changes), rebase it (only the run image changes, same stack
id) or leave it, by kpack's own rules; unknown when its builder is not the platform's or it has
no successful build to judge against.

Exits 0 when nothing would change and 1 when something would (as kubectl diff does); other exit
codes are errors.`

  static override examples = ['<%= config.bin %> diff -b lock-1.1.0.yaml -f values.yaml', '<%= config.bin %> diff -b lock-1.1.0.yaml -f values.yaml --json']

  static override flags = {...inputFlags, ...kubeFlags}

  async run(): Promise<void> {
    const {flags} = await this.parse(Diff)
    const {lock, values, render, registryOptions} = await loadInputs(flags)
    const r = await withKube(flags, (kube) => diff({kube, lock, values, render, registryOptions}))
    if (flags.json) this.log(JSON.stringify({ok: true, ...r}))
    else this.print(r)
    if (r.differences) process.exitCode = EXIT.changes
  }

  private print(r: DiffResult): void {
    const from = r.from ? `${r.from.version} (kpack ${r.from.kpackVersion}, revision ${r.from.revision})` : 'nothing installed'
    this.log(`${from} -> ${r.to.version} (kpack ${r.to.kpackVersion})`)
    for (const s of r.stages) {
      if (!s.added.length && !s.changed.length && !s.removed.length && !s.kept.length) {
        this.log(`stage ${s.name}: no changes (${s.unchanged} unchanged)`)
        continue
      }
      this.log(`stage ${s.name}: ${s.added.length} added, ${s.changed.length} changed, ${s.removed.length} removed, ${s.unchanged} unchanged`)
      for (const a of s.added) this.log(`  + ${a}`)
      for (const c of s.changed) {
        this.log(`  ~ ${c.object}${c.conflict ? ` (takes over fields of ${c.conflict})` : ''}`)
        for (const f of c.fields.slice(0, 20)) this.log(`      ${formatFieldChange(f)}`)
        if (c.fields.length > 20) this.log(`      and ${c.fields.length - 20} more fields`)
      }
      for (const d of s.removed) this.log(`  - ${d}`)
      for (const k of s.kept) this.log(`  = kept ${k}`)
    }
    if (!r.kpackImpact.length) {
      this.log('kpack Images: none in the cluster')
    } else {
      this.log('kpack Images:')
      for (const i of r.kpackImpact) this.log(`  ${i.image} (${i.builder}): ${i.impact}${i.reasons.length ? ` [${i.reasons.join(', ')}]` : ''}${i.details.length ? `: ${i.details.join('; ')}` : ''}`)
    }
    this.log(r.differences ? 'differences: yes' : 'differences: none')
  }
}
