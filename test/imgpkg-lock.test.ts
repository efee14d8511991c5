/**
 * `kpi relocate --lock-format imgpkg` writes Carvel's ImagesLock beside the lock, and the real
 * `imgpkg copy --lock` accepts it: it copies every image it names, by digest, from the air-gapped
 * registry (TLS from the sandbox CA, htpasswd credentials from the docker config) to another
 * repository, and its own lock output names the same digests.
 */
import {execFile} from 'node:child_process'
import {mkdtemp, readFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {parse} from 'yaml'
import {bundleImages} from '../src/bundle/images.js'
import {loadBundle} from '../src/bundle/load.js'
import {parseReference} from '../src/oci/reference.js'
import type {OciClient} from '../src/oci/client.js'
import {startSandbox, type Sandbox} from '../src/sandbox/sandbox.js'
import {findTool} from '../src/sandbox/tools.js'
import {expectCleanFailure, kpi} from './helpers/cli.js'
import {sandboxClients} from './helpers/images.js'

// built by scripts/tools.sh from ../shared/upstream; the test skips (and says so) without it
const imgpkg = findTool('imgpkg')
let sb: Sandbox
let work: string
let dst: OciClient
let src: OciClient

beforeAll(async () => {
  if (!imgpkg) return
  work = await mkdtemp(join(tmpdir(), 'kpi-imgpkg-'))
  sb = await startSandbox({runDir: join(work, 'sandbox'), samples: ['v1']})
  ;({src, dst} = await sandboxClients(sb))
})

afterAll(async () => {
  await src?.close()
  await dst?.close()
  await sb?.stop()
})

describe.skipIf(!imgpkg)('kpi relocate --lock-format imgpkg', () => {
  it('writes an ImagesLock that imgpkg copy --lock accepts and copies image for image', async () => {
    const lock = join(work, 'lock.yaml')
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-repo', sb.airgapPrefix, '--lock-output', lock, '--lock-format', 'imgpkg', '--ca-cert', sb.caFile, '--json'], sb.env)
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as {imagesLock: string}
    expect(out.imagesLock).toBe(join(work, 'lock.images.yml'))
    const images = parse(await readFile(out.imagesLock, 'utf8')) as {apiVersion: string; kind: string; images: Array<{image: string; annotations: Record<string, string>}>}
    expect([images.apiVersion, images.kind]).toEqual(['imgpkg.carvel.dev/v1alpha1', 'ImagesLock'])
    const kpiLock = (await loadBundle(lock)).bundle
    const digests = new Set(bundleImages(kpiLock).map((i) => parseReference(i.ref).digest!))
    expect(new Set(images.images.map((i) => parseReference(i.image).digest!))).toEqual(digests)
    for (const i of images.images) expect(kpiLock.origins?.[Object.keys(kpiLock.origins).find((k) => k.endsWith(parseReference(i.image).digest!))!]).toBe(i.annotations['kbld.carvel.dev/id'])

    const copied = `${sb.airgap.host}/imgpkg-copy`
    const imgpkgLock = join(work, 'imgpkg-out.yml')
    await promisify(execFile)(imgpkg!, ['copy', '--lock', out.imagesLock, '--to-repo', copied, '--lock-output', imgpkgLock, '--registry-ca-cert-path', sb.caFile], {
      env: {...process.env, DOCKER_CONFIG: sb.dockerConfigDir},
    }).catch((e: {stdout?: string; stderr?: string}) => {
      throw new Error(`imgpkg copy --lock failed:\n${e.stdout ?? ''}\n${e.stderr ?? ''}`)
    })
    const again = parse(await readFile(imgpkgLock, 'utf8')) as {images: Array<{image: string}>}
    expect(new Set(again.images.map((i) => parseReference(i.image).digest!))).toEqual(digests)
    for (const d of digests) expect(await dst.headManifest({registry: sb.airgap.host, repository: 'imgpkg-copy'}, d), d).toBeDefined()
  })

  it('--lock-format without --lock-output is a usage error', async () => {
    const r = await kpi(['relocate', '-b', sb.bundles.v1!, '--to-tar', join(work, 'x.tar'), '--lock-format', 'imgpkg'], sb.env)
    expect(expectCleanFailure(r)).toBe('Error: --lock-format goes with --lock-output LOCK: the other formats are written beside the lock')
    expect(r.code).toBe(2)
  })
})
