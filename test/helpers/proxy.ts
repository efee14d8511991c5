/** Pieces of the small HTTP proxies the transport tests run on loopback. */
import {connect, type Socket} from 'node:net'

/** Answer a CONNECT by splicing the client's socket to 127.0.0.1:`port`. */
export function tunnelTo(port: number, socket: Socket, head: Buffer): void {
  const up = connect(port, '127.0.0.1', () => {
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    up.write(head)
    up.pipe(socket)
    socket.pipe(up)
  })
  up.on('error', () => socket.destroy())
  socket.on('error', () => up.destroy())
}
