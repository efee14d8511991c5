/**
 * The parts of undici kpi uses, loaded on their own. undici's index loads every feature it has
 * (fetch, WebSocket, EventSource, mocks, caches: 111 modules), which every kpi command paid at
 * start for the three classes it needs (measured: 0.15 -> 0.09 CPU-s and 60 -> 52 MiB RSS for
 * loading them). The request API goes onto Dispatcher.prototype as undici's index puts it.
 * Loaded on first use: commands that reach no registry (render, status, history) load none of it.
 */
import {createRequire} from 'node:module'
import type * as Undici from 'undici'

const require = createRequire(import.meta.url)

export interface UndiciParts {
  Dispatcher: typeof Undici.Dispatcher
  Agent: typeof Undici.Agent
  EnvHttpProxyAgent: typeof Undici.EnvHttpProxyAgent
}

let parts: UndiciParts | undefined

export function undici(): UndiciParts {
  if (!parts) {
    const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher
    Object.assign(Dispatcher.prototype, require('undici/lib/api/index.js') as object)
    parts = {
      Dispatcher,
      Agent: require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent,
      EnvHttpProxyAgent: require('undici/lib/dispatcher/env-http-proxy-agent.js') as typeof Undici.EnvHttpProxyAgent,
    }
  }
  return parts
}
