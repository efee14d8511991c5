/**
 * The pod launcher: runs inside a pod's network namespace and a private mount namespace
 * (`ip netns exec NS unshare --mount --propagation private node sandbox-nsproc.js SPEC`), where it
 * 1. listens on the namespace's own 127.0.0.1 at each forwarded port and passes every connection
 *    to `<sockDir>/<port>.sock`, a Unix socket the runner serves on the host (forward.ts): the file
 *    system crosses network namespaces, so the pod reaches the apiserver and the registries at the
 *    same 127.0.0.1:<port> addresses as the host without any address outside its namespace;
 * 2. bind-mounts the pod's volumes (prepared by the runner as plain directories) at their mount
 *    paths, visible to this process tree only;
 * 3. runs the pod's binary with the pod's environment and exits with it.
 * Started by src/sandbox/podproc.ts as a program of its own: an entry point, so it lives beside the
 * commands (it prints and exits; the sandbox core does neither).
 */
import {spawn, execFileSync} from 'node:child_process'
import {mkdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {connect, createServer} from 'node:net'
import {dirname, join} from 'node:path'
import {splice} from '../sandbox/splice.js'
import type {NsProcSpec} from '../sandbox/podproc.js'


function log(msg: string): void {
  process.stderr.write(`[kpi sandbox] ${msg}\n`)
}

async function forward(sockDir: string, port: number): Promise<void> {
  const srv = createServer((client) => splice(client, connect(join(sockDir, `${port}.sock`))))
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(port, '127.0.0.1', resolve)
  })
}

function mountAll(mounts: NsProcSpec['mounts']): void {
  for (const m of mounts) {
    // the mount point must exist; on the host it is an empty directory (or file, for a subPath
    // that names a file) that nobody else sees mounted
    if (statSync(m.source).isFile()) {
      mkdirSync(dirname(m.target), {recursive: true})
      writeFileSync(m.target, '', {flag: 'a'})
    } else {
      mkdirSync(m.target, {recursive: true})
    }
    execFileSync('mount', ['--bind', m.source, m.target])
    if (m.readOnly) execFileSync('mount', ['-o', 'remount,bind,ro', m.target])
  }
}

async function main(): Promise<void> {
  const specFile = process.argv[2]
  if (!specFile) throw new Error('usage: nsproc SPEC.json')
  const spec = JSON.parse(readFileSync(specFile, 'utf8')) as NsProcSpec
  await Promise.all(spec.forwardPorts.map((p) => forward(spec.sockDir, p)))
  mountAll(spec.mounts)
  const child = spawn(spec.cmd, spec.args, {cwd: spec.cwd, env: spec.env, stdio: 'inherit'})
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => child.kill(sig))
  child.on('error', (e) => {
    log(`cannot start ${spec.cmd}: ${e.message}`)
    process.exit(127)
  })
  child.on('exit', (code, signal) => {
    log(`${spec.cmd} exited (${signal ?? `code ${code}`})`)
    process.exit(code ?? 1)
  })
}

main().catch((e: unknown) => {
  log(e instanceof Error ? e.message : String(e))
  process.exit(1)
})
