/**
 * Registry error responses (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":...}]}`) as
 * KpiErrors whose message names the image and what went wrong.
 */
import type {Dispatcher} from 'undici'
import {KpiError, type ErrorKind, type RegistryErrorDetails} from '../errors.js'

export interface RegistryErrorBody {
  code: string
  message?: string
}

export interface ErrorContext {
  registry: string
  /** what was asked for, e.g. `manifest 127.0.0.1:5000/app@sha256:...` or `blob ...` */
  subject: string
  /** pull or push, for the hint on a denial */
  action: 'pull' | 'push'
}

/** Read at most 64 KiB of an error body; a registry's error is small, and a proxy's page might not be. */
export async function readErrorBody(res: Dispatcher.ResponseData): Promise<string> {
  let text = ''
  try {
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString('utf8')
      if (text.length > 65_536) {
        res.body.destroy()
        break
      }
    }
  } catch {
    // the body is only for the message
  }
  return text
}

export function parseErrorBody(text: string): RegistryErrorBody[] {
  try {
    const parsed = JSON.parse(text) as {errors?: Array<{code?: unknown; message?: unknown}>}
    if (!Array.isArray(parsed.errors)) return []
    return parsed.errors.flatMap((e) => typeof e?.code === 'string' ? [{code: e.code, message: typeof e.message === 'string' ? e.message : undefined}] : [])
  } catch {
    return []
  }
}

const clip = (s: string): string => {
  const one = s.replace(/\s+/g, ' ').trim()
  return one.length > 200 ? `${one.slice(0, 200)}...` : one
}

/** Build the KpiError for a registry response that was not what the operation expected. */
export function registryError(status: number, bodyText: string, ctx: ErrorContext): KpiError {
  const errors = parseErrorBody(bodyText)
  const codes = new Set(errors.map((e) => e.code))
  const said = errors[0]?.message ? `: ${clip(errors[0].message)}` : ''
  const details: RegistryErrorDetails = {source: 'registry', status, codes: [...codes]}
  const make = (kind: ErrorKind, message: string, hint?: string): KpiError => new KpiError(kind, message, {hint, details})

  if (codes.has('NAME_UNKNOWN')) {
    return make('not-found', `${ctx.subject} not found: the repository does not exist in ${ctx.registry}`, 'check the repository name')
  }
  if (codes.has('MANIFEST_UNKNOWN') || codes.has('BLOB_UNKNOWN') || status === 404) {
    return make('not-found', `${ctx.subject} not found`, 'check the reference, and that it was pushed to this registry')
  }
  if (codes.has('MANIFEST_BLOB_UNKNOWN')) {
    return make('failed', `registry ${ctx.registry} rejected ${ctx.subject}: a blob or manifest it references is missing${said}`, 'push blobs and child manifests before the manifest that references them')
  }
  if (codes.has('DIGEST_INVALID') || codes.has('SIZE_INVALID')) {
    return make('integrity', `registry ${ctx.registry} rejected ${ctx.subject}: the content does not match its digest or size${said}`, 'the source content is corrupt or changed while copying; check the source')
  }
  if (codes.has('DENIED') || codes.has('UNAUTHORIZED') || status === 401 || status === 403) {
    return make('auth', `registry ${ctx.registry} denied ${ctx.action} of ${ctx.subject}${said}`, `check that the user may ${ctx.action} this repository`)
  }
  if (codes.has('TOOMANYREQUESTS') || status === 429) {
    return make('failed', `registry ${ctx.registry} is rate limiting requests (429) for ${ctx.subject}`, 'retry later, or log in to get a higher limit')
  }
  if (status >= 500) {
    return make('failed', `registry ${ctx.registry} answered ${status} for ${ctx.subject}${said}`, 'the registry failed; retry later or check its logs')
  }
  if (errors.length) {
    return make('failed', `registry ${ctx.registry} rejected ${ctx.subject} (${errors[0]!.code})${said}`)
  }
  return make('failed', `registry ${ctx.registry} answered ${status} for ${ctx.subject}${bodyText ? `: ${clip(bodyText)}` : ''}`)
}
