/** Two sockets joined both ways, both closed when either fails: the forwarders' one job (forward.ts, src/cli/sandbox-nsproc.ts). */
import type {Socket} from 'node:net'

export function splice(a: Socket, b: Socket): void {
  a.pipe(b).pipe(a)
  const close = () => {
    a.destroy()
    b.destroy()
  }
  a.on('error', close)
  b.on('error', close)
}
