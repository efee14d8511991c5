/**
 * Which blob uploads run at once: up to `n` of the layers, the largest waiting first (a big layer
 * started last would move alone at the end, on one connection), and beside them, in a lane of
 * their own, up to `n` small blobs.
 */
import {limit} from '../pool.js'

export interface UploadPool {
  <T>(size: number, task: () => Promise<T>): Promise<T>
  /** the layers' lane: running, waiting, and how many may run (small blobs always have `n`) */
  readonly layers: {readonly running: number; readonly waiting: number; readonly width: number}
  /** up to `width` layers at once (never fewer than now, nor more than `n`) */
  widenTo(width: number): void
}

/**
 * Blobs below this size (configs, small layers) take a lane of their own, `n` at a time: their
 * time is round trips, not bytes. Queued behind the big ones, the benchmark platform's 60 config
 * blobs were uploaded last, a second of round trips after the last layer was in.
 */
export const SMALL_BLOB_BYTES = 1 << 20

export interface UploadPoolOptions {
  /** the largest waiting blob starts first (default), else the first given */
  bySize?: boolean
  /** start nothing until the tasks given in the same turn are all in (they then start largest first) */
  gather?: boolean
  /** layers at once to begin with (default `n`); widenTo() lets more run, up to `n` */
  start?: number
}

/** Each task says the size of its blob. */
export function uploadPool(n: number, o: UploadPoolOptions = {}): UploadPool {
  const max = Math.max(1, n)
  const small = limit(max)
  const layers = limit(Math.min(max, Math.max(1, o.start ?? max)), {gather: o.gather})
  const bySize = o.bySize ?? true
  const run = <T>(size: number, task: () => Promise<T>): Promise<T> => (size < SMALL_BLOB_BYTES ? small(task) : layers(task, bySize ? size : 0))
  return Object.assign(run, {
    layers,
    widenTo: (width: number) => {
      while (layers.width < Math.min(width, max)) layers.widen()
    },
  })
}
