/**
 * The same kp descriptor through the real kp and through kpi gives the same kpack objects: kpi
 * (bundle import-kp, relocate, install) puts ClusterStacks, ClusterStores, ClusterBuilders and the
 * ClusterLifecycle in the sandbox's cluster; `kp import --dry-run --output yaml` (kpack-cli, built
 * by scripts/tools.sh) says what kp import makes of the same descriptor against that cluster (its
 * kp-config, which kpi renders). Specs are compared up to image locations: images by digest, and
 * builder tags and service accounts (where each tool puts them) left out. One difference is by
 * design: kp resolves a multi-arch image to its linux/amd64 image (go-containerregistry's
 * remote.Image) and so drops the other platforms of a multi-arch run image, where kpi keeps the
 * index; kpi's index is compared through its linux/amd64 image.
 * Run `npm run build` first (the CLI runs from dist/).
 */
import {execFile} from 'node:child_process'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'
import {parseAllDocuments, stringify} from 'yaml'
import {parseReference} from '../src/oci/reference.js'
import {sandboxValues} from '../src/sandbox/sandbox-files.js'
import {toolPath} from '../src/sandbox/tools.js'
import {usePlatformSandbox} from './helpers/platform.js'
import {kpDescriptorV1alpha3} from './helpers/kp.js'
import {kpi, type CliResult} from './helpers/cli.js'
import {sandboxClients} from './helpers/images.js'

const p = usePlatformSandbox('kp-compare', {samples: ['v2'], runPods: true})
const run = (args: string[]): Promise<CliResult> => kpi(args, p.env)

type Obj = {kind: string; metadata: {name: string}; spec: Record<string, any>}

/** Every sha256 digest in a value, in order: an image reference's location left out. */
const digests = (v: unknown): string[] => JSON.stringify(v ?? null).match(/sha256:[0-9a-f]{64}/g) ?? []

/** What both tools must agree on, per kind; `image` maps an image reference's digest to the one to compare. */
async function essence(o: Obj, image: (v: unknown) => Promise<string[]> = async (v) => digests(v)): Promise<unknown> {
  const s = o.spec
  switch (o.kind) {
    case 'ClusterStack': return {id: s.id, build: await image(s.buildImage), run: await image(s.runImage)}
    case 'ClusterStore': return {sources: (await Promise.all(s.sources.map((x: unknown) => image(x)))).flat().sort()}
    case 'ClusterLifecycle': return {image: await image(s.image)}
    case 'ClusterBuilder': return {stack: [s.stack.kind, s.stack.name], store: [s.store?.kind, s.store?.name], order: s.order}
    default: return undefined
  }
}

const compared = ['ClusterLifecycle', 'ClusterStack', 'ClusterStore', 'ClusterBuilder']

describe('kp import and kpi give the same kpack objects for one descriptor', () => {
  it('ClusterStacks, ClusterStores, ClusterBuilders and the ClusterLifecycle are equal up to image locations', {timeout: 300_000}, async () => {
    p.nameRunDir()
    const kp = toolPath('kp')
    const v2 = p.sb.bundle.v2!
    const descriptor = join(p.work, 'descriptor.yaml')
    await writeFile(descriptor, stringify(kpDescriptorV1alpha3(v2)))

    const bundle = join(p.work, 'imported')
    expect((await run(['bundle', 'import-kp', descriptor, '-o', bundle, '--kpack-from', p.sb.bundles.v2!])).code).toBe(0)
    const lock = join(p.work, 'lock.yaml')
    const relocated = await run(['relocate', '-b', bundle, '--to-repo', p.sb.airgapPrefix, '--lock-output', lock, '--ca-cert', p.sb.caFile])
    expect(relocated.code, relocated.stderr).toBe(0)
    const values = join(p.work, 'values.yaml')
    await writeFile(values, await sandboxValues(p.sb), {mode: 0o600})
    const installed = await run(['install', '-b', lock, '-f', values, '--ca-cert', p.sb.caFile, '--wait=applied'])
    expect(installed.code, installed.stderr + installed.stdout).toBe(0)

    const out = await promisify(execFile)(kp, ['import', '-f', descriptor, '--dry-run', '--output', 'yaml', '--registry-ca-cert-path', p.sb.caFile], {
      env: {...process.env, KUBECONFIG: p.sb.controlPlane!.kubeconfig, DOCKER_CONFIG: p.sb.dockerConfigDir},
      maxBuffer: 16 << 20,
    }).catch((e: {stdout?: string; stderr?: string}) => {
      throw new Error(`kp import --dry-run failed:\n${e.stdout ?? ''}\n${e.stderr ?? ''}`)
    })
    const fromKp = parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj).filter((o) => o && compared.includes(o.kind))
    const byKp = new Map(await Promise.all(fromKp.map(async (o) => [`${o.kind}/${o.metadata.name}`, await essence(o)] as const)))
    // kpi's images, in the air-gapped registry: an index is compared through its linux/amd64 image, which is what kp keeps
    const {dst} = await sandboxClients(p.sb)
    const linuxAmd64 = async (v: unknown): Promise<string[]> => {
      const refs = JSON.stringify(v ?? null).match(/[^"\s]+@sha256:[0-9a-f]{64}/g) ?? []
      return Promise.all(refs.map(async (ref) => {
        const p = parseReference(ref)
        const repo = {registry: p.registry, repository: p.repository}
        const m = await dst.getManifest(repo, p.digest!)
        const index = JSON.parse(m.bytes.toString('utf8')) as {manifests?: Array<{digest: string; platform?: {os: string; architecture: string}}>}
        return index.manifests?.find((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64')?.digest ?? p.digest!
      }))
    }
    expect([...byKp.keys()].sort()).toEqual([
      'ClusterBuilder/base', 'ClusterBuilder/default', 'ClusterLifecycle/default-lifecycle',
      'ClusterStack/default', 'ClusterStack/jammy', 'ClusterStore/default',
    ])
    for (const [key, want] of byKp) {
      const [kind, name] = key.split('/') as [string, string]
      const live = await p.kube.get({apiVersion: 'kpack.io/v1alpha2', kind, name})
      expect(live, `${key} installed by kpi`).toBeDefined()
      expect(await essence(live as unknown as Obj, linuxAmd64), key).toEqual(want)
    }
    await dst.close()
  })
})
