/**
 * The bundle's question about an image reference: does it parse (src/oci/reference.ts, the one
 * parser) and is it pinned by a sha256 digest. Answers as data, so the validator can collect every
 * problem with its place in the file.
 */
import {isKpiError} from '../errors.js'
import {parseReference} from '../oci/index.js'

const sha256DigestRe = /^sha256:[0-9a-f]{64}$/

export type PinnedCheck =
  | {ok: true; tag?: string; digest?: string}
  | {ok: false; message: string; hint: string}

export function checkPinnedReference(ref: string, opts: {allowTags?: boolean} = {}): PinnedCheck {
  const bad = (message: string, hint: string): PinnedCheck => ({ok: false, message, hint})
  if (ref.trim() === '') return bad('image reference is empty', 'give registry/repository:tag@sha256:<digest>')
  if (ref !== ref.trim() || /\s/.test(ref)) return bad(`reference "${ref}" contains whitespace`, 'remove the spaces')
  // the digest is judged here, with the bundle's own hint; the rest by the parser
  const at = ref.indexOf('@')
  const digest = at === -1 ? undefined : ref.slice(at + 1)
  const unpinned = at === -1 ? ref : ref.slice(0, at)
  let tag: string | undefined
  try {
    tag = parseReference(unpinned).tag
  } catch (e) {
    const reason = isKpiError(e) && e.details?.source === 'reference' ? e.details.reason : undefined
    return bad(`reference "${ref}" is not a valid image name`, reason ?? 'expected registry[:port]/repository[:tag]')
  }
  if (digest === undefined) {
    if (opts.allowTags) return {ok: true, tag}
    return bad(`reference "${ref}" is not pinned by digest`, `pin it: kpi bundle lock BUNDLE resolves every tag to its digest (or write ${ref}@sha256:<digest>)`)
  }
  if (!sha256DigestRe.test(digest)) {
    return bad(`reference "${ref}" has an invalid digest "${digest}"`, `expected sha256: and 64 lowercase hex digits (crane digest ${unpinned})`)
  }
  return {ok: true, tag, digest}
}
