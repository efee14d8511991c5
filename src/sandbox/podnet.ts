/**
 * A pod subnet per sandbox: one /24 of 10.244.0.0/16 that KWOK hands pod addresses from, and the
 * names of everything the sandbox creates on the host for its pods (network namespaces, veths,
 * Unix sockets), all carrying the subnet's index so sandboxes running at once never collide and a
 * later run can clean up after one that crashed.
 *
 * Allocation is an O_EXCL lock file per /24 under LOCK_DIR holding the owner's pid. A lock whose
 * pid is gone is stale: the next allocator takes it over (guarded by an atomic mkdir so two
 * allocators never both take it), after removing what the dead owner left in the kernel.
 */
import {mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, openSync, closeSync, writeSync, unlinkSync} from 'node:fs'
import {join} from 'node:path'
import {KpiError} from '../errors.js'
import {cleanNetworkIndex} from './netns.js'

/** On tmpfs: a reboot clears the locks along with the namespaces they guard. */
export const LOCK_DIR = process.env.KPI_SANDBOX_NET_DIR || '/run/kpi-sandbox'
const SUBNETS = 256

export interface PodSubnet {
  /** 0..255: the third octet of the /24 */
  index: number
  /** e.g. 10.244.7.0/24 */
  cidr: string
  /** a short directory for this sandbox's Unix sockets (sun_path is 108 bytes at most) */
  sockDir: string
  /** removes the lock and the socket directory; safe to call twice */
  release(): void
}

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function lockOwner(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10)
    return Number.isFinite(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function tryCreate(file: string): boolean {
  let fd: number
  try {
    fd = openSync(file, 'wx', 0o644)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  }
  try {
    writeSync(fd, `${process.pid}\n`)
  } finally {
    closeSync(fd)
  }
  return true
}

/**
 * Takes over the lock of index i if its owner is dead. The takeover directory makes the
 * check-clean-replace sequence exclusive; a takeover directory left by a crashed allocator expires.
 */
async function tryTakeover(dir: string, i: number, file: string): Promise<boolean> {
  const guard = join(dir, `${i}.takeover`)
  try {
    mkdirSync(guard)
  } catch {
    try {
      if (Date.now() - statSync(guard).mtimeMs > 60_000) rmSync(guard, {recursive: true, force: true})
    } catch {
      // gone meanwhile
    }
    return false
  }
  try {
    const owner = lockOwner(file)
    // an unreadable lock is being written right now, or was left half-written: only the latter if old
    if (owner === undefined) {
      try {
        if (Date.now() - statSync(file).mtimeMs < 10_000) return false
      } catch {
        // removed meanwhile: fall through and take it
      }
    } else if (alive(owner)) {
      return false
    }
    await cleanNetworkIndex(i)
    rmSync(file, {force: true})
    rmSync(join(dir, String(i)), {recursive: true, force: true})
    return tryCreate(file)
  } finally {
    rmSync(guard, {recursive: true, force: true})
  }
}

/** Cleans up after every sandbox whose owner died (whatever its /24), so leftovers never pile up. */
async function sweepDeadOwners(dir: string): Promise<void> {
  for (const f of readdirSync(dir)) {
    const m = /^(\d+)\.lock$/.exec(f)
    if (!m) continue
    const file = join(dir, f)
    const owner = lockOwner(file)
    // the takeover cleans under its guard; the lock it then holds for us is dropped at once
    if (owner !== undefined && !alive(owner) && (await tryTakeover(dir, Number(m[1]), file))) rmSync(file, {force: true})
  }
}

/** Reserves a free /24 for this process; throws when all 256 are taken by live sandboxes. */
export async function allocatePodSubnet(dir = LOCK_DIR): Promise<PodSubnet> {
  mkdirSync(dir, {recursive: true})
  await sweepDeadOwners(dir)
  // start at a pid-dependent index so concurrent allocators rarely race for the same file
  const start = process.pid % SUBNETS
  for (let n = 0; n < SUBNETS; n++) {
    const i = (start + n) % SUBNETS
    const file = join(dir, `${i}.lock`)
    if (tryCreate(file) || (await tryTakeover(dir, i, file))) {
      // a live owner's leftovers cannot exist; a crashed owner's were cleaned in the takeover,
      // but a lock removed by hand may have left some: clean again, it is cheap
      await cleanNetworkIndex(i)
      const sockDir = join(dir, String(i))
      rmSync(sockDir, {recursive: true, force: true})
      mkdirSync(sockDir, {recursive: true})
      writeFileSync(join(sockDir, 'owner'), `${process.pid}\n`)
      let released = false
      return {
        index: i,
        cidr: `10.244.${i}.0/24`,
        sockDir,
        release: () => {
          if (released) return
          released = true
          rmSync(sockDir, {recursive: true, force: true})
          if (lockOwner(file) === process.pid) {
            try {
              unlinkSync(file)
            } catch {
              // already gone
            }
          }
        },
      }
    }
  }
  throw new KpiError('failed', `no free pod subnet: all ${SUBNETS} /24s of 10.244.0.0/16 are held by running sandboxes (locks in ${dir})`, {
    hint: 'stop some sandboxes (kpi sandbox down --dir DIR)',
  })
}

/**
 * Frees subnet `index` if `ownerPid` holds it and is dead (a supervisor killed without its
 * cleanup): its namespaces, veths and the processes in them go, then the lock.
 */
export async function releaseDeadOwnerSubnet(index: number, ownerPid: number, dir = LOCK_DIR): Promise<void> {
  const file = join(dir, `${index}.lock`)
  if (lockOwner(file) !== ownerPid || alive(ownerPid)) return
  await cleanNetworkIndex(index)
  rmSync(join(dir, String(index)), {recursive: true, force: true})
  rmSync(file, {force: true})
}
