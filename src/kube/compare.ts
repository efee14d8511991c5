/**
 * Whether an apply would change an object: the live object against the server's dry-run result of
 * the apply. Server-owned bookkeeping (resourceVersion, managedFields times) and status (which
 * controllers write at any moment, and an apply of the main resource never changes) are left out,
 * so a controller updating status between the two reads is not a change.
 */
import {canonical} from '../canonical.js'
import type {LiveObject} from './types.js'

function comparable(o: LiveObject): unknown {
  const {status: _status, ...rest} = o
  const {resourceVersion: _rv, managedFields: _mf, ...meta} = o.metadata
  return canonical({...rest, metadata: meta})
}

export function sameObject(live: LiveObject, preview: LiveObject): boolean {
  return JSON.stringify(comparable(live)) === JSON.stringify(comparable(preview))
}
