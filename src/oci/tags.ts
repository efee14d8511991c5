/** Tag listing, page by page as the registry links them. */
import type {Dispatcher} from 'undici'
import {pullScope} from './auth.js'
import {formatRepo} from './reference.js'
import {dump, fail, foreignOriginError, header, readLimited, sameOrigin, type Requester} from './request.js'
import type {Repo} from './types.js'

/**
 * The `rel="next"` target of a Link header, resolved against the request URL: in each
 * comma-separated link, `<target>` followed by `;` and, somewhere after it, `rel=next` (quoted or
 * not). Scanned in one pass: a regex for it backtracked quadratically on a registry's hostile
 * header (16 KiB of `<` took 0.4 s).
 */
export function nextLink(link: string | undefined, base: string): string | undefined {
  if (!link) return undefined
  for (const part of link.split(',')) {
    const rel = Math.max(part.lastIndexOf('rel=next'), part.lastIndexOf('rel="next'))
    if (rel < 0) continue
    // a target runs from a `<` to the first `>` after it; `<`s before that `>` share its outcome
    for (let open = part.indexOf('<'); open >= 0 && open < rel; ) {
      const close = part.indexOf('>', open + 1)
      if (close < 0) break
      let semi = close + 1
      while (semi < part.length && /\s/.test(part[semi]!)) semi++
      if (close > open + 1 && part[semi] === ';' && rel > semi) return new URL(part.slice(open + 1, close), base).toString()
      open = part.indexOf('<', close + 1)
    }
  }
  return undefined
}

/**
 * The next page a registry's Link header names after the page at `url`, refused when it is on
 * another origin: it is asked for with the registry's credentials, which a Link (from the
 * registry, or a proxy in front of it) must not send elsewhere. `url` may still be https for a
 * registry since found to answer plain HTTP, so the registry's current base counts too.
 */
export function nextPage(http: Requester, registry: string, res: Dispatcher.ResponseData, url: string, what: string): string | undefined {
  const next = nextLink(header(res, 'link'), url)
  if (next && !sameOrigin(next, url) && !sameOrigin(next, http.base(registry))) throw foreignOriginError(registry, next, `the next page of ${what}`)
  return next
}

export function tagOps(http: Requester, pageSize = 1000): {listTags(repo: Repo): Promise<string[]>} {
  async function listTags(repo: Repo): Promise<string[]> {
    const tags: string[] = []
    let url: string | undefined = http.repoUrl(repo, `tags/list?n=${pageSize}`)
    for (let pages = 0; url && pages < 10_000; pages++) {
      const res: Dispatcher.ResponseData = await http.send(repo.registry, {method: 'GET', url, scopes: [pullScope(repo.repository)], retry: true})
      if (res.statusCode === 404) {
        await dump(res)
        return tags
      }
      if (res.statusCode !== 200) return fail(res, {registry: repo.registry, subject: `tags of ${formatRepo(repo)}`, action: 'pull'})
      const body = await readLimited(res, 64 * 1024 * 1024, `tags of ${formatRepo(repo)}`)
      const parsed = JSON.parse(body.toString('utf8')) as {tags?: string[] | null}
      tags.push(...(parsed.tags ?? []))
      url = nextPage(http, repo.registry, res, url, `tags of ${formatRepo(repo)}`)
    }
    return tags
  }
  return {listTags}
}
