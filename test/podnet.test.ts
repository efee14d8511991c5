/**
 * Pod subnets: each sandbox holds its own /24 by a lock file; a lock whose owner died is taken
 * over, and what the dead owner left in the kernel (network namespaces, veths) is removed first.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {allocatePodSubnet, type PodSubnet} from '../src/sandbox/podnet.js'

const ip = (...args: string[]) => execFileSync('ip', args, {encoding: 'utf8'})

describe('pod subnets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kpi-podnet-'))
  let real: PodSubnet | undefined
  afterAll(() => {
    real?.release()
    rmSync(dir, {recursive: true, force: true})
  })

  it('takes over a dead owner\'s /24 after removing its namespaces and veths, and refuses when all are held', async () => {
    // an index no live sandbox on this machine uses: the names it cleans are machine-wide
    real = await allocatePodSubnet()
    const j = real.index
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid!
    for (let i = 0; i < 256; i++) writeFileSync(join(dir, `${i}.lock`), `${i === j ? deadPid : process.pid}\n`)
    ip('netns', 'add', `kpi-${j}-9`)
    ip('link', 'add', `kpi${j}-9`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', `kpi-${j}-9`)
    ip('link', 'add', `kpi${j}-8`, 'type', 'veth', 'peer', 'name', `kpi${j}-8p`)

    const taken = await allocatePodSubnet(dir)
    expect(taken.index).toBe(j)
    expect(taken.cidr).toBe(`10.244.${j}.0/24`)
    expect(ip('netns', 'list')).not.toContain(`kpi-${j}-9`)
    expect(ip('-o', 'link', 'show')).not.toMatch(new RegExp(`kpi${j}-[89]`))
    expect(existsSync(taken.sockDir)).toBe(true)

    await expect(allocatePodSubnet(dir)).rejects.toThrow(/no free pod subnet/)
    taken.release()
    expect(existsSync(join(dir, `${j}.lock`))).toBe(false)
    expect(existsSync(taken.sockDir)).toBe(false)
  })
})
