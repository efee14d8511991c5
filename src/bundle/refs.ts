/**
 * The few image-reference checks the bundle validator needs: does a reference parse, and is it
 * pinned by a sha256 digest. Kept minimal on purpose; src/oci/reference.ts is the full parser
 * and these will be unified with it.
 */

// Grammar of github.com/distribution/reference, reduced to what a bundle needs.
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const domain = `(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`
const pathComponent = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*'
const nameRe = new RegExp(`^(?:${domain}/)?${pathComponent}(?:/${pathComponent})*$`)
const tagRe = /^[\w][\w.-]{0,127}$/
const digestRe = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}$/
export const sha256DigestRe = /^sha256:[0-9a-f]{64}$/

export interface SplitReference {
  /** everything before the tag and digest: `registry/repository` */
  name: string
  tag?: string
  digest?: string
}

/** Split `name[:tag][@digest]` without validating; the tag colon is the last one after the last slash. */
export function splitReference(ref: string): SplitReference {
  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
  }
  return {name: rest, tag, digest}
}

export type PinnedCheck =
  | {ok: true; name: string; tag?: string; digest: string}
  | {ok: false; message: string; hint: string}

/** Checks that `ref` parses and names its content by `@sha256:<64 lowercase hex>`. */
export function checkPinnedReference(ref: string): PinnedCheck {
  const bad = (message: string, hint: string): PinnedCheck => ({ok: false, message, hint})
  if (ref.trim() === '') return bad('image reference is empty', 'give registry/repository:tag@sha256:<digest>')
  if (ref !== ref.trim() || /\s/.test(ref)) return bad(`reference "${ref}" contains whitespace`, 'remove the spaces')
  const {name, tag, digest} = splitReference(ref)
  if (name === '') return bad(`reference "${ref}" has no repository`, 'give registry/repository:tag@sha256:<digest>')
  if (!nameRe.test(name)) {
    const parts = name.split('/')
    const first = parts[0] ?? ''
    const hasDomain = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')
    const repository = hasDomain ? parts.slice(1).join('/') : name
    const hint = /[A-Z]/.test(repository)
      ? 'repository names must be lowercase'
      : 'expected registry[:port]/repository with lowercase letters, digits and . _ - separators'
    return bad(`reference "${ref}" is not a valid image name`, hint)
  }
  if (name.length > 255) return bad(`reference "${ref}" is longer than 255 characters`, 'shorten the repository name')
  if (tag !== undefined && !tagRe.test(tag)) {
    return bad(`reference "${ref}" has an invalid tag "${tag}"`, 'tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -')
  }
  if (digest === undefined) {
    return bad(`reference "${ref}" is not pinned by digest`, `pin it: ${ref}@sha256:<digest> (crane digest ${ref})`)
  }
  if (!digestRe.test(digest) || !sha256DigestRe.test(digest)) {
    const unpinned = tag === undefined ? name : `${name}:${tag}`
    return bad(
      `reference "${ref}" has an invalid digest "${digest}"`,
      `expected sha256: and 64 lowercase hex digits (crane digest ${unpinned})`,
    )
  }
  return {ok: true, name, tag, digest}
}

/** Rewrites the registry/repository part of a reference and keeps its tag and digest. */
export function withName(ref: string, name: string): string {
  const {tag, digest} = splitReference(ref)
  return `${name}${tag === undefined ? '' : `:${tag}`}${digest === undefined ? '' : `@${digest}`}`
}
