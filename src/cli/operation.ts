/** What install, upgrade, rollback and diff share on the command line: flags, inputs, the registry check's settings. */
import {Flags} from '@oclif/core'
import {DEFAULT_STAGE_TIMEOUT_MS} from '../apply/install.js'
import type {OperationSummary} from '../apply/summary.js'
import {formatDuration} from '../apply/stage.js'
import {loadLock} from '../bundle/source.js'
import type {Bundle} from '../bundle/types.js'
import type {OciClientOptions} from '../oci/index.js'
import {renderPlatform} from '../render/render.js'
import type {RenderResult} from '../render/types.js'
import {DEFAULT_LEASE_SECONDS} from '../revision/lease.js'
import {DEFAULT_HISTORY_MAX} from '../revision/store.js'
import {loadValues} from '../values/load.js'
import type {Values} from '../values/types.js'
import {isKpiError, KpiError} from '../errors.js'
import {parseDuration} from './duration.js'
import {plainHttpHosts, plainHttpNotice, readCaCerts, registryFlags, registryTimeoutMs, tlsSkipFromFlags} from './registry.js'

export const inputFlags = {
  bundle: Flags.string({char: 'b', description: 'relocated lock (kpi relocate --lock-output), or a relocated bundle image REPO@sha256:<digest>', required: true}),
  values: Flags.string({char: 'f', description: 'values file (see docs/values.md)', required: true}),
  'plain-http': registryFlags['plain-http'],
  'insecure-registry': registryFlags['insecure-registry'],
}

export const operationFlags = {
  wait: Flags.string({
    description: 'ready: wait for kpack\'s Ready condition on stacks, stores and builders; applied: do not (no kpack controller runs)',
    options: ['ready', 'applied'],
    default: 'ready',
  }),
  timeout: Flags.string({description: 'how long each stage may take to become ready (e.g. 90s, 5m, 1h)', default: '5m'}),
  'lease-duration': Flags.string({
    description: `how long the operation lease lasts without renewal: after a kpi process dies, the next operation waits at most this long (default ${DEFAULT_LEASE_SECONDS}s)`,
  }),
  'history-max': Flags.integer({description: 'revisions kept in the cluster (the deployed one always is)', default: DEFAULT_HISTORY_MAX, min: 1}),
}

export interface OperationFlagValues {
  wait: 'ready' | 'applied'
  timeoutMs: number
  leaseSeconds?: number
  historyMax: number
}

export function operationOptions(flags: {wait: string; timeout: string; 'lease-duration'?: string; 'history-max': number}): OperationFlagValues {
  const lease = parseDuration(flags['lease-duration'], '--lease-duration')
  return {
    wait: flags.wait as 'ready' | 'applied',
    timeoutMs: parseDuration(flags.timeout, '--timeout') ?? DEFAULT_STAGE_TIMEOUT_MS,
    ...(lease ? {leaseSeconds: Math.max(1, Math.round(lease / 1000))} : {}),
    historyMax: flags['history-max'],
  }
}

export interface Inputs {
  lock: Bundle
  values: Values
  render: RenderResult
  /** the registry check's settings: the values' CAs and --ca-cert, plain HTTP hosts */
  registryOptions: OciClientOptions
}

export async function loadInputs(flags: {bundle: string; values: string; 'plain-http'?: string[]; 'ca-cert'?: string[]; 'insecure-skip-tls-verify'?: boolean; 'insecure-registry'?: string[]; json?: boolean}): Promise<Inputs> {
  const values = await loadValues(flags.values)
  const options = await registryOptions(flags, values.caCerts)
  const {bundle: lock} = await loadLock(flags.bundle, options)
  const render = renderInputs(lock, flags.bundle, values, flags.values)
  return {lock, values, render, registryOptions: options}
}

/**
 * Renders the lock with the values, naming both files when they do not fit together (the lock's
 * images are not under the registry the values name): render itself knows no file names.
 */
export function renderInputs(lock: Bundle, lockFile: string, values: Values, valuesFile: string): RenderResult {
  try {
    return renderPlatform(lock, values)
  } catch (e) {
    if (!isKpiError(e) || e.kind !== 'input' || e.message.includes(valuesFile)) throw e
    throw new KpiError('input', `${valuesFile} with ${lockFile}: ${e.message}`, {hint: e.hint, details: e.details, cause: e})
  }
}

export async function registryOptions(flags: {'plain-http'?: string[]; 'ca-cert'?: string[]; 'insecure-skip-tls-verify'?: boolean; 'insecure-registry'?: string[]; json?: boolean}, valuesCas: string[] = []): Promise<OciClientOptions> {
  const plain = plainHttpHosts(flags)
  // the registry CAs the cluster will trust (values) and those given here
  const caCerts = [...valuesCas, ...(await readCaCerts(flags['ca-cert']))]
  // how long a registry may stay silent: KPI_REGISTRY_TIMEOUT, as for relocate
  const timeoutMs = registryTimeoutMs()
  return {caCerts, ...tlsSkipFromFlags(flags), plainHttp: (r) => plain.has(r), onPlainHttp: plainHttpNotice(flags.json), ...(timeoutMs ? {timeoutMs} : {})}
}

/** The lines after `Upgraded ...` / `Rolled back ...`: objects, stages, pruned, conflicts, kpack readiness. */
export function summaryLines(r: OperationSummary): string[] {
  const o = r.objects
  const lines = [`  objects: ${o.total} (${o.created} created, ${o.changed} changed, ${o.unchanged} unchanged${r.pruned.length ? `, ${r.pruned.length} deleted` : ''})`]
  lines.push(`  stages: ${r.stages.map((s) => `${s.name} ${formatDuration(s.durationMs)}`).join(', ')}`)
  if (r.pruned.length) lines.push(`  deleted: ${r.pruned.join(', ')}`)
  for (const k of r.kept) lines.push(`  kept: ${k}`)
  for (const c of r.conflicts) lines.push(`  ${c}`)
  if (r.kpackReadiness.checked) lines.push('  kpack readiness: every stack, store and builder is Ready')
  else if (r.kpackReadiness.notChecked.length) lines.push(`  kpack readiness NOT checked (--wait=applied): ${r.kpackReadiness.notChecked.join(', ')}`)
  return lines
}

/**
 * Said when a run with the deployed revision's inputs changed a Secret: revisions record no
 * credentials, so new ones in the values (a registry or proxy password) are applied as a
 * correction of the same revision, and the run would otherwise call them drift.
 */
export function credentialNote(changed: OperationSummary['changedObjects'], revision: number): string | undefined {
  const secrets = changed.filter((c) => c.object.startsWith('Secret ')).map((c) => c.object)
  if (!secrets.length) return undefined
  return `  ${secrets.join(', ')}: new data, as from new credentials in the values (a revision records no credentials, so this stays revision ${revision}); what reads ${secrets.length === 1 ? 'it' : 'them'} at start is rolled`
}
