/**
 * kpi's cache directory: $KPI_CACHE_DIR, else $XDG_CACHE_HOME/kpi, else ~/.cache/kpi (an empty
 * variable counts as unset). The Go-built tools (scripts/tools.sh), generated layers (imagegen)
 * and V8's code caches (bin/code-cache.js) live there. scripts/tools.sh and bin/code-cache.js,
 * which run before any of kpi's modules are loaded, follow the same rule in their own words.
 */
import {homedir} from 'node:os'
import {join} from 'node:path'

export function kpiCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.KPI_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kpi')
}
