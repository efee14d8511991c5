/**
 * What a running sandbox tells its users: `env`, a shell file exporting where everything is (for
 * kpi, kp, kubectl and scripts), and `values.yaml`, a values file for the air-gapped registry that
 * `kpi install` takes as it is. Both hold the registry password: they are written 0600.
 */
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {stringify} from 'yaml'
import type {Sandbox} from './sandbox.js'

/** The values for the air-gapped registry (repository build-service, its credentials and CA), plus teams. */
export async function sandboxValues(sb: Sandbox, teams: string[] = []): Promise<string> {
  const ca = await readFile(sb.caFile, 'utf8')
  return stringify({
    registry: {server: sb.airgap.host, repository: 'build-service', username: sb.airgap.username, password: sb.airgap.password},
    caCerts: [ca],
    // a team with an account of its own (SandboxOptions.teams) pushes under teams/<name> with it
    ...(teams.length ? {teams: teams.map((name) => {
      const own = sb.teamAccounts[name]
      return own ? {name, registry: {repository: `teams/${name}`, ...own}} : {name}
    })} : {}),
  })
}

export function sandboxEnv(sb: Sandbox): Record<string, string> {
  return {
    KUBECONFIG: sb.controlPlane?.kubeconfig ?? '',
    DOCKER_CONFIG: sb.dockerConfigDir,
    KPI_PLAIN_HTTP: sb.public.host,
    KPI_SANDBOX_PUBLIC: sb.public.host,
    KPI_SANDBOX_AIRGAP: sb.airgap.host,
    KPI_SANDBOX_USERNAME: sb.airgap.username ?? '',
    KPI_SANDBOX_PASSWORD: sb.airgap.password ?? '',
    KPI_SANDBOX_CA: sb.caFile,
    KPI_SANDBOX_BUNDLE_V1: sb.bundles.v1 ?? '',
    KPI_SANDBOX_BUNDLE_V2: sb.bundles.v2 ?? '',
  }
}

const shellQuote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`

/** Writes `<dir>/env` and `<dir>/values.yaml`; returns their paths. */
export async function writeSandboxFiles(sb: Sandbox, dir: string): Promise<{envFile: string; valuesFile: string}> {
  const envFile = join(dir, 'env')
  const valuesFile = join(dir, 'values.yaml')
  const lines = Object.entries(sandboxEnv(sb)).map(([k, v]) => `export ${k}=${shellQuote(v)}`)
  await writeFile(envFile, lines.join('\n') + '\n', {mode: 0o600})
  await writeFile(valuesFile, await sandboxValues(sb), {mode: 0o600})
  return {envFile, valuesFile}
}
