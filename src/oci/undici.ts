/**
 * The parts of undici kpi uses, loaded on their own. undici's index loads every feature it has
 * (fetch, WebSocket, EventSource, mocks, caches: 111 modules), which every kpi command paid at
 * start for the three classes it needs (measured: 0.15 -> 0.09 CPU-s and 60 -> 52 MiB RSS for
 * loading them). The request API goes onto Dispatcher.prototype as undici's index puts it.
 */
import {createRequire} from 'node:module'
import type * as Undici from 'undici'

const require = createRequire(import.meta.url)

export const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher
export const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent
export const EnvHttpProxyAgent = require('undici/lib/dispatcher/env-http-proxy-agent.js') as typeof Undici.EnvHttpProxyAgent
Object.assign(Dispatcher.prototype, require('undici/lib/api/index.js') as object)
