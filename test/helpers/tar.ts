/** Re-packing a tar with a change (tar-stream), for tests that craft hostile or damaged archives. */
import {readFile, writeFile} from 'node:fs/promises'
import * as tarStream from 'tar-stream'

export interface TarEntry {
  header: tarStream.Headers
  data: Buffer
}

export async function readTarEntries(bytes: Buffer): Promise<TarEntry[]> {
  const entries: TarEntry[] = []
  const ex = tarStream.extract()
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        entries.push({header, data: Buffer.concat(chunks)})
        next()
      })
    })
    ex.on('finish', resolve)
    ex.on('error', reject)
  })
  ex.end(bytes)
  await done
  return entries
}

export async function packTar(entries: TarEntry[]): Promise<Buffer> {
  const pack = tarStream.pack()
  const out: Buffer[] = []
  pack.on('data', (c: Buffer) => out.push(c))
  const ended = new Promise((r) => pack.on('end', r))
  for (const e of entries) pack.entry(e.header, e.data)
  pack.finalize()
  await ended
  return Buffer.concat(out)
}

/** Writes `to`: the members of the tar `from`, re-packed after `edit` changed the list. */
export async function repackTar(from: string, to: string, edit: (entries: TarEntry[]) => void): Promise<string> {
  const entries = await readTarEntries(await readFile(from))
  edit(entries)
  await writeFile(to, await packTar(entries))
  return to
}
