/**
 * The process that keeps a `kpi sandbox up` sandbox running after the command returns: started
 * detached by src/sandbox/updown.ts as `node sandbox-supervisor.js DIR` (an entry point, so it
 * lives beside the commands), it starts the sandbox in DIR/run, writes
 * DIR/env and DIR/values.yaml, records its state in DIR/state.json, and stops everything on
 * SIGTERM or SIGINT (`kpi sandbox down`).
 */
import {join} from 'node:path'
import {isKpiError} from '../errors.js'
import {writeState} from '../sandbox/state.js'
import {startSandbox, type Sandbox} from '../sandbox/sandbox.js'
import {writeSandboxFiles} from '../sandbox/sandbox-files.js'

async function main(): Promise<void> {
  const dir = process.argv[2]
  if (!dir) throw new Error('usage: supervisor DIR')
  const started = Date.now()
  await writeState(dir, {pid: process.pid, state: 'starting', startedAt: new Date(started).toISOString()})
  let sb: Sandbox | undefined
  let stopping = false
  // `final`: the state to leave behind; a failed start keeps 'failed' (and why), which `up` reads
  // after this process exited: overwritten with 'stopped', the reason was lost
  const stop = async (code: number, final: 'stopped' | null = 'stopped') => {
    if (stopping) return
    stopping = true
    await sb?.stop().catch(() => {})
    if (final) await writeState(dir, {pid: process.pid, state: final, startedAt: new Date(started).toISOString()})
    process.exit(code)
  }
  // while the sandbox starts, a signal (kpi sandbox down, an interrupted up) aborts the start, which
  // stops what it started (sb is not there yet for stop() to stop) and lands in the catch below
  const abort = new AbortController()
  const onSignal = () => (sb ? void stop(0) : abort.abort())
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  try {
    sb = await startSandbox({runDir: join(dir, 'run'), controlPlane: true, samples: ['v1', 'v2'], signal: abort.signal})
    await writeSandboxFiles(sb, dir)
  } catch (e) {
    if (abort.signal.aborted) return stop(0)
    await writeState(dir, {
      pid: process.pid, state: 'failed', startedAt: new Date(started).toISOString(),
      message: e instanceof Error ? e.message : String(e),
      ...(isKpiError(e) ? {kind: e.kind, hint: e.hint} : {}),
    })
    await stop(1, null)
    return
  }
  await writeState(dir, {
    pid: process.pid, state: 'ready', startedAt: new Date(started).toISOString(), readyMs: Date.now() - started,
    podCidr: sb.controlPlane?.podCidr, missingPrograms: sb.missingPrograms,
  })
  // the sandbox's servers are child processes and unref'd: this keeps the supervisor alive
  setInterval(() => {}, 1 << 30)
}

main().catch((e: unknown) => {
  process.stderr.write(`sandbox supervisor: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
