/**
 * `npm run demo`: the main job on the embedded default. A sandbox (a public registry standing in
 * for the internet, an air-gapped registry with auth and TLS, a real control plane) and the
 * sample platform; then kpi, run as a user runs it, carries v1 across the air gap as one archive,
 * installs it, and reports status. kpi sees only registry addresses, a docker config and a kubeconfig.
 */
import {spawn} from 'node:child_process'
import {readFile, rm, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {startSandbox, type Sandbox} from './sandbox.js'

const bin = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

function step(title: string): void {
  process.stdout.write(`\n=== ${title}\n`)
}

function kpi(args: string[], env: Record<string, string>): Promise<void> {
  process.stdout.write(`$ kpi ${args.join(' ')}\n`)
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [bin, ...args], {stdio: 'inherit', env: {...process.env, ...env}})
    child.on('close', (code) => (code === 0 ? res() : rej(new Error(`kpi ${args[0]} exited with ${code}`))))
  })
}

async function main(): Promise<void> {
  const runDir = resolve(process.env.KPI_DEMO_DIR ?? join(process.cwd(), '.run', 'demo'))
  await rm(runDir, {recursive: true, force: true})
  step(`Starting the sandbox in ${runDir}`)
  const started = Date.now()
  let sb: Sandbox | undefined
  const stop = async () => {
    await sb?.stop()
  }
  process.on('SIGINT', () => void stop().then(() => process.exit(130)))
  try {
    sb = await startSandbox({runDir, controlPlane: true, samples: ['v1', 'v2']})
    process.stdout.write(`public registry   ${sb.public.host} (plain HTTP, stands in for the internet)\n`)
    process.stdout.write(`air-gapped        ${sb.airgap.host} (htpasswd + TLS, CA ${sb.caFile})\n`)
    process.stdout.write(`control plane     ${sb.controlPlane?.server} (kubeconfig ${sb.controlPlane?.kubeconfig})\n`)
    process.stdout.write(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s\n`)
    const env = {...sb.env, KUBECONFIG: sb.controlPlane?.kubeconfig ?? ''}
    const archive = join(runDir, 'build-service-1.0.0.tar')
    const lock = join(runDir, 'lock-v1.yaml')

    step('Connected side: check the bundle and write it into one archive')
    await kpi(['bundle', 'lint', sb.bundles.v1!], env)
    await kpi(['relocate', '-b', sb.bundles.v1!, '--to-tar', archive], env)
    await kpi(['tar', 'inspect', archive], env)

    step('Air-gapped side: stop the public registry, verify the archive, push it to the air-gapped registry')
    await sb.public.stop()
    await kpi(['tar', 'verify', archive], env)
    await kpi(['relocate', '--from-tar', archive, '--to-repo', sb.airgapPrefix, '--lock-output', lock, '--ca-cert', sb.caFile], env)
    process.stdout.write(`\nlock written: ${lock}\n`)

    step('Install the platform from the lock')
    const values = join(runDir, 'values.yaml')
    const ca = (await readFile(sb.caFile, 'utf8')).trim().split('\n').map((l) => `      ${l}`).join('\n')
    await writeFile(values, [
      'registry:',
      `  server: ${sb.airgap.host}`,
      '  repository: build-service',
      `  username: ${sb.airgap.username}`,
      `  password: ${sb.airgap.password}`,
      'caCerts:',
      '  - |',
      ca,
      'teams:',
      '  - name: team-a',
      '',
    ].join('\n'), {mode: 0o600})
    process.stdout.write('The sandbox\'s pods are played by KWOK and run no code, so no kpack controller sets Ready on\n' +
      'stacks, stores and builders: --wait=applied waits for everything else (CRDs, rollouts, endpoints).\n')
    await kpi(['install', '-b', lock, '-f', values, '--wait=applied', '--ca-cert', sb.caFile], env)
    await kpi(['status'], env)
    step('Install again with the same inputs: nothing changes')
    await kpi(['install', '-b', lock, '-f', values, '--wait=applied', '--ca-cert', sb.caFile], env)
    step('Demo finished')
  } finally {
    await stop()
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
