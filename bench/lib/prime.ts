/**
 * Memory in the same state for every measured run. On a VM whose host takes back the memory the
 * guest frees (free page reporting, as on the machine these numbers come from), a run that writes
 * 2 GiB into the page cache pays for each page the host must back again: up to 15 s of system
 * time for 2 GiB, against 0.4 s for pages freed a moment before. Which runs paid depended on what
 * the run before had freed: an archive read (its archive still held) took 23-24 s where the same
 * tools took 7-9 s in other runs. Writing a file of the bytes a run will write and removing it
 * just before the run starts gives every tool pages freed a moment before. It costs nothing
 * measurable on a machine without such a host.
 */
import {execFile} from 'node:child_process'
import {open, readdir, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'

const CHUNK = 1 << 20

/** Writes `bytes` into a file under `dir` and removes it; how long it took, in ms. */
export async function primeMemory(dir: string, bytes: number): Promise<number> {
  const started = performance.now()
  if (bytes <= 0) return 0
  const file = join(dir, `prime-${process.pid}.bin`)
  const chunk = Buffer.alloc(CHUNK, 0x5a)
  const h = await open(file, 'w')
  try {
    for (let done = 0; done < bytes; done += CHUNK) await h.write(chunk, 0, Math.min(CHUNK, bytes - done))
  } finally {
    await h.close()
    await rm(file, {force: true})
  }
  return performance.now() - started
}

/**
 * Writes every dirty page to disk (`sync`); how long it took, in ms. A run that starts while the
 * run before's registry (2 GiB) or the platform push (4 GiB) is still being written back shares
 * the disk and the CPU with that writeback: the first runs of a benchmark took 25-60% longer,
 * whichever tool came first.
 */
export async function settleDisk(): Promise<number> {
  const started = performance.now()
  await promisify(execFile)('sync')
  return performance.now() - started
}

/**
 * Drops the page-cache copy of every file under `path` (a file or a directory), as `dd
 * iflag=nocache count=0` does (POSIX_FADV_DONTNEED; the pages must be clean: settleDisk first).
 * An archive read starts from the disk, as it does where the archive arrives on a drive: a
 * tool whose archive was left in the page cache by its own writing would otherwise read memory
 * while one that wrote around the cache (kpi, O_DIRECT) reads the disk.
 */
export async function evictFromCache(path: string): Promise<number> {
  const files: string[] = []
  const walk = async (p: string): Promise<void> => {
    const s = await stat(p)
    if (s.isDirectory()) for (const n of await readdir(p)) await walk(join(p, n))
    else if (s.isFile()) files.push(p)
  }
  await walk(path)
  for (const f of files) await promisify(execFile)('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none'])
  return files.length
}
