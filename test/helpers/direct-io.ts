/** Whether the file system under `dir` takes an aligned O_DIRECT write (what kpi's archive writer tries). */
import {constants} from 'node:fs'
import {open, rm} from 'node:fs/promises'
import {join} from 'node:path'

declare const WebAssembly: {Memory: new (d: {initial: number}) => {buffer: ArrayBuffer}}

export async function takesDirectIo(dir: string): Promise<boolean> {
  const file = join(dir, `.direct-probe-${process.pid}`)
  // WebAssembly memory starts on a page boundary: an aligned buffer
  const buf = Buffer.from(new WebAssembly.Memory({initial: 1}).buffer, 0, 4096)
  try {
    const h = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600)
    try {
      await h.write(buf, 0, 4096, 0)
      return true
    } finally {
      await h.close()
    }
  } catch {
    return false
  } finally {
    await rm(file, {force: true})
  }
}
