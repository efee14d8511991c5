import {Command, Flags} from '@oclif/core'
import {KpiError, exitCodeOf, exitCodes, formatError, isKpiError} from '../errors.js'

/**
 * kpi's exit codes, documented in the README ("Exit codes"): 0 on success, 1 for an error kpi did
 * not expect, and one code per KpiError kind, grouped: bad input (usage 2, input 3), a registry or
 * cluster that refused or failed (auth 4, tls 5, network 6, not-found 7, integrity 8, failed 11),
 * the state of the cluster (conflict 9, timeout 10), and an upgrade that was rolled back (12).
 */
export const EXIT = {
  success: 0,
  /** kpi diff: something would change (as kubectl diff) */
  changes: 1,
  unexpected: 1,
  usage: exitCodes.usage,
  input: exitCodes.input,
  auth: exitCodes.auth,
  tls: exitCodes.tls,
  network: exitCodes.network,
  notFound: exitCodes['not-found'],
  integrity: exitCodes.integrity,
  conflict: exitCodes.conflict,
  timeout: exitCodes.timeout,
  failed: exitCodes.failed,
  /** an upgrade failed its gates and the previous revision was put back, healthy */
  rolledBack: exitCodes['rolled-back'],
  interrupted: exitCodes.interrupted,
  internal: exitCodes.internal,
} as const

/**
 * Every kpi command extends this: it adds the global flags and turns typed errors into
 * one line on stderr (or a JSON object with --json) and an exit code. No stack traces.
 */
export abstract class KpiCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({description: 'print machine-readable JSON (events as JSON lines, then a result)', default: false}),
    'ca-cert': Flags.string({description: 'PEM file of extra CA certificates to trust for registries (repeatable; the Kubernetes API is verified against the kubeconfig\'s CA)', multiple: true}),
    'insecure-skip-tls-verify': Flags.boolean({description: 'do not verify the TLS certificates of registries (unsafe; explicit opt-in; the Kubernetes API follows the kubeconfig)', default: false}),
  }

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit: number}}): Promise<unknown> {
    const json = this.argv.includes('--json')
    // oclif's own parse errors carry their exit code; with --json a bad flag or argument is the
    // usage failure document too (docs/json.md), not oclif's help text with nothing on stdout
    if (!isKpiError(err) && err.oclif) {
      if (!json || err.oclif.exit !== exitCodes.usage) return super.catch(err)
      const command = [this.config.bin, ...(this.id ? this.id.split(':') : [])].join(' ')
      err = new KpiError('usage', oneLine(err.message), {hint: `see ${command} --help`})
    }
    err = fromFsError(err)
    const line = formatError(err)
    if (json) {
      process.stdout.write(JSON.stringify({ok: false, error: {kind: isKpiError(err) ? err.kind : 'internal', message: line}}) + '\n')
    } else {
      process.stderr.write(`Error: ${line}\n`)
      if (process.env.KPI_DEBUG && err.stack) process.stderr.write(err.stack + '\n')
    }
    process.exitCode = exitCodeOf(err)
    return undefined
  }
}

/** oclif's multi-line parse message (a list of args, a note, a pointer to --help) as one line. */
const oneLine = (message: string): string =>
  message.split('\n').map((l) => l.trim()).filter((l) => l && l !== 'See more help with --help').join(' ')

const fsReasons: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  ENOSPC: 'no space left on the device',
  EROFS: 'read-only file system',
}

/** A file error that escaped the core becomes one line naming the path, not errno text. */
function fromFsError<E extends Error>(err: E): E | KpiError {
  const e = err as E & {code?: string; path?: string}
  if (isKpiError(e) || !e.code || !fsReasons[e.code] || !e.path) return err
  return new KpiError(e.code === 'ENOSPC' ? 'failed' : 'input', `${e.path}: ${fsReasons[e.code]}`, {hint: 'check the path and its permissions'})
}
