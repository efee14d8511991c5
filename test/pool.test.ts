import {describe, expect, it} from 'vitest'
import {limit} from '../src/pool.js'

const tick = () => new Promise<void>((r) => setImmediate(r))

describe('limit', () => {
  it('runs at most n tasks at once, in the order given', async () => {
    const pool = limit(2)
    let running = 0
    let most = 0
    const started: number[] = []
    await Promise.all([0, 1, 2, 3, 4].map((i) => pool(async () => {
      started.push(i)
      running++
      most = Math.max(most, running)
      await tick()
      running--
    })))
    expect(most).toBe(2)
    expect(started).toEqual([0, 1, 2, 3, 4])
  })

  it('starts waiting tasks of higher priority first, equal ones in the order given', async () => {
    const pool = limit(1)
    const started: string[] = []
    let release!: () => void
    const first = pool(() => new Promise<void>((r) => { started.push('first'); release = r }))
    const waiting = [['a', 5], ['b', 100], ['c', 5], ['d', 0], ['e', 100]] as const
    const rest = waiting.map(([name, size]) => pool(async () => void started.push(name), size))
    release()
    await Promise.all([first, ...rest])
    expect(started).toEqual(['first', 'b', 'e', 'a', 'c', 'd'])
  })
})
