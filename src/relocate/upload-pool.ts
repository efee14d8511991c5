/**
 * Which blob uploads run at once. Up to `n`, the largest waiting first; and while the plan's
 * largest blob is moving, when it is more of the whole than one upload's fair share, the others
 * run only as many beside it as give it its share. A blob moves on one connection (an upload
 * cannot be split), so a layer that is a quarter of a platform, copied as one of eight equal
 * streams, was left to move alone for the last quarter of the run (the benchmark's 560 MiB
 * build-image layer: 2.5 s alone after every other blob was in, in an 11.4 s copy).
 */
import {limit} from '../pool.js'

export type UploadPool = <T>(size: number, task: () => Promise<T>) => Promise<T>

/**
 * Blobs below this size (configs, small layers) take a lane of their own, `n` at a time: their
 * time is round trips, not bytes. Queued behind the big ones, the benchmark platform's 60 config
 * blobs were uploaded last, a second of round trips after the last layer was in.
 */
export const SMALL_BLOB_BYTES = 1 << 20

export interface UploadPoolOptions {
  /** the size of the plan's largest blob */
  largest: number
  /** the bytes the plan moves */
  total: number
  /** the largest waiting blob starts first (default), else the first given */
  bySize?: boolean
  /** start nothing until the tasks given in the same turn are all in (they then start largest first) */
  gather?: boolean
}

/** Each task says the size of its blob. */
export function uploadPool(n: number, o: UploadPoolOptions): UploadPool {
  const max = Math.max(1, n)
  const small = limit(max)
  const big = bigLane(max, o.largest, o.total, o.bySize ?? true, o.gather ?? false)
  return (size, task) => (size < SMALL_BLOB_BYTES ? small(task) : big(size, task))
}

function bigLane(max: number, largest: number, total: number, bySize: boolean, gather: boolean): UploadPool {
  // beside the largest, the others get the share the rest of the bytes need: (total - largest) / largest
  const beside = largest > 0 && largest * max > total ? Math.max(1, Math.min(max - 1, Math.ceil((total - largest) / largest))) : max
  let active = 0
  let bigRunning = false
  const queue: Array<{size: number; start: (big: boolean) => void}> = []
  const next = () => {
    while (active < max && queue.length > 0) {
      const first = queue[0]!
      // the largest blob (the first of that size, should two share it) paces the others
      const big = !bigRunning && largest > 0 && first.size >= largest
      if (!big && bigRunning && active - 1 >= beside) return
      queue.shift()
      active++
      if (big) bigRunning = true
      first.start(big)
    }
  }
  return <T>(size: number, task: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      const start = (big: boolean) => {
        task().then(resolve, reject).finally(() => {
          active--
          if (big) {
            bigRunning = false
            largest = 0
          }
          next()
        })
      }
      // largest first (when ordered by size); equal sizes keep their order
      let i = queue.length
      while (i > 0 && bySize && queue[i - 1]!.size < size) i--
      queue.splice(i, 0, {size, start})
      if (gather) setImmediate(next)
      else next()
    })
}
