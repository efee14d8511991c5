/**
 * Memory for writes that bypass the page cache. O_DIRECT wants the file offset, the length and
 * the buffer's address aligned to the device's block; node's buffers start wherever malloc puts
 * them (16 bytes past a page here), and JavaScript cannot see an address. A WebAssembly memory
 * starts on a page boundary, so slabs carved from one at multiples of their size are aligned.
 * One memory per archive, a single reservation, its pages touched only as slabs are used.
 */
import {BLOCK} from './tar.js'

/** bytes of one write: large enough that each is one request to the disk, few enough in flight */
export const SLAB_BYTES = 1 << 20
/** the alignment writes keep: tar members start and end at multiples of a block */
export const DIRECT_ALIGN = BLOCK
/** slabs per archive: two per blob written at once (one filling, one being written), and spares */
const SLABS = 8
const WASM_PAGE = 64 * 1024

// the one part of the WebAssembly API used here (the project's lib has no DOM types)
declare const WebAssembly: {Memory: new (d: {initial: number; maximum: number}) => {buffer: ArrayBuffer}}

export interface Slabs {
  /** a free slab, once one is free */
  take(): Promise<Buffer>
  /** a free slab, if one is free now */
  tryTake(): Buffer | undefined
  give(slab: Buffer): void
}

/** `count` slabs of `bytes` each (a multiple of 64 KiB) */
export function alignedSlabs(count = SLABS, bytes = SLAB_BYTES): Slabs {
  const pages = Math.ceil((count * bytes) / WASM_PAGE)
  const memory = new WebAssembly.Memory({initial: pages, maximum: pages})
  const free: Buffer[] = []
  for (let i = 0; i < count; i++) free.push(Buffer.from(memory.buffer, i * bytes, bytes))
  const waiting: Array<(slab: Buffer) => void> = []
  return {
    take: () => {
      const slab = free.pop()
      return slab ? Promise.resolve(slab) : new Promise((resolve) => waiting.push(resolve))
    },
    tryTake: () => free.pop(),
    give: (slab) => {
      const next = waiting.shift()
      if (next) next(slab)
      else free.push(slab)
    },
  }
}
