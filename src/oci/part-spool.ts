/**
 * Where parts of a blob fetched ahead (ranged.ts) wait for their turn: a temporary file, not the
 * process's memory. Behind the benchmark's WAN profile the parts ahead held 32 MiB in memory and
 * were most of the difference between a copy on loopback (94 MiB peak RSS) and one behind the WAN
 * (126-129 MiB); with half the budget the copy took 14.1-14.4 s instead of 11.5-11.8 s, so the
 * parts are worth having, only not in memory. A part is written as its bytes come and read back
 * when the consumer reaches it: the page cache usually still holds it, the kernel can drop it
 * under pressure, and it costs a copy each way, which a path slow enough to need parts can spare.
 *
 * The file has a slot of PART_BYTES per part the budget allows. It is unlinked as soon as it is
 * open (nothing is left behind, whatever happens to the process) and closed when no part is in
 * it, so an idle client holds no descriptor.
 */
import {readSync, writeSync} from 'node:fs'
import {open, unlink, type FileHandle} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {KpiError} from '../errors.js'

export class PartSpool {
  private readonly freeSlots: number[] = []
  private file?: Promise<FileHandle>
  private path = ''
  /** slots taken plus operations in flight: the file closes when this falls to 0 */
  private busy = 0

  /**
   * @param limit bytes the parts may take in all
   * @param partBytes the most a part holds (one slot)
   */
  constructor(readonly limit: number, readonly partBytes: number, private readonly dir = tmpdir()) {
    for (let i = Math.floor(limit / partBytes) - 1; i >= 0; i--) this.freeSlots.push(i)
  }

  /** a slot for a part of `bytes`, or undefined when every slot is taken */
  take(bytes: number): number | undefined {
    if (bytes > this.partBytes) return undefined
    const slot = this.freeSlots.pop()
    if (slot !== undefined) this.busy++
    return slot
  }

  /** The slot is free again: call only once nothing more will be written to it. */
  give(slot: number): void {
    this.busy--
    this.freeSlots.push(slot)
    this.idle()
  }

  /** slots free now (for tests) */
  get free(): number {
    return this.freeSlots.length
  }

  /** Writes `chunk` at `at` within the slot. */
  async write(slot: number, at: number, chunk: Buffer): Promise<void> {
    await this.run((fd) => {
      for (let done = 0; done < chunk.length;) done += writeSync(fd, chunk, done, chunk.length - done, slot * this.partBytes + at + done)
    })
  }

  /** Reads `length` bytes at `at` within the slot into `into`; returns how many it read. */
  read(slot: number, at: number, into: Buffer, length: number): Promise<number> {
    return this.run((fd) => readSync(fd, into, 0, length, slot * this.partBytes + at))
  }

  /**
   * `op` on this thread once the file is open: a part's bytes go to and come back from the page
   * cache in microseconds, where a thread-pool round trip per chunk (as the archive writer found,
   * parts.ts) cost more than the copy. Behind the benchmark's WAN profile 40% of the bytes pass
   * through here, in some 18 000 writes of 50 KiB on average and half as many reads.
   */
  private async run<T>(op: (fd: number) => T): Promise<T> {
    this.busy++
    try {
      return op((await this.handle()).fd)
    } catch (e) {
      throw new KpiError('failed', `keeping parts of a blob in ${this.path}: ${(e as Error).message}`, {
        hint: `parts of big blobs fetched ahead wait in a temporary file of up to ${this.limit >> 20} MiB; point TMPDIR to a writable directory with room for it`,
        cause: e,
      })
    } finally {
      this.busy--
      this.idle()
    }
  }

  private handle(): Promise<FileHandle> {
    if (!this.file) {
      this.path = join(this.dir, `kpi-parts-${process.pid}-${Math.random().toString(36).slice(2)}`)
      const path = this.path
      this.file = open(path, 'wx+', 0o600).then(async (h) => {
        // the open descriptor keeps the file; no name is left to clean up
        await unlink(path).catch(() => undefined)
        return h
      })
      // a failed open is tried again by the next operation
      this.file.catch(() => {
        this.file = undefined
      })
    }
    return this.file
  }

  private idle(): void {
    if (this.busy > 0 || !this.file) return
    const f = this.file
    this.file = undefined
    f.then((h) => h.close()).catch(() => undefined)
  }
}
