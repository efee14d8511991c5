/** Whether the file system under `dir` takes an aligned O_DIRECT write (what kpi's archive writer tries). */
import {constants} from 'node:fs'
import {open, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {alignedSlabs, DIRECT_ALIGN} from '../../src/archive/aligned.js'

export async function takesDirectIo(dir: string): Promise<boolean> {
  const file = join(dir, `.direct-probe-${process.pid}`)
  const buf = alignedSlabs(1, 64 << 10).tryTake()!
  try {
    const h = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600)
    try {
      await h.write(buf, 0, DIRECT_ALIGN, 0)
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
