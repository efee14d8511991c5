/**
 * The files of a bundle directory that travel in an archive under kpi/bundle/: bundle.yaml and
 * the rest of the directory, minus anything that may hold a credential. Hidden files, key
 * material, docker configs and files with a password or token value are left out with a warning
 * naming the file (never its content): an archive crosses into another network and must carry
 * no secret.
 */
import {lstat, readFile, readdir} from 'node:fs/promises'
import {join, relative, sep} from 'node:path'
import type {BundleFile, LoadedBundle} from '../bundle/types.js'
import {KpiError} from '../errors.js'
import type {OnEvent} from '../progress/events.js'
import {badName} from './scan.js'

const MAX_FILE = 16 * 1024 * 1024
const MAX_TOTAL = 64 * 1024 * 1024
const MAX_FILES = 1000

const secretName = /(^|\/)(\.[^/]*|[^/]*\.(key|p12|pfx|jks|keystore|kubeconfig|env)|[^/]*kubeconfig[^/]*|(admin|kubelet|controller-manager|scheduler)\.conf|[^/]*htpasswd[^/]*|[^/]*credential[^/]*|[^/]*secret[^/]*|[^/]*token[^/]*|config\.json|\.dockerconfigjson|id_(rsa|ecdsa|ed25519)[^/]*)$/i
/** a key, password, token or secret as the value of a name that ends in one (`registry_password: x`, `export KPI_REGISTRY_PASSWORD=x`) */
const SECRET_WORD = String.raw`[\w.-]*(password|passwd|token|secret|apikey|api_key|accesskey|secretkey|client-key-data|client-secret)`
const secretContent = [
  // PEM and PGP (`-----BEGIN PGP PRIVATE KEY BLOCK-----`) private keys
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----/,
  /"auths"\s*:/,
  /"(identitytoken|registrytoken|password|auth)"\s*:\s*"[^"]+"/i,
  // on one line: `password:` with its value on the lines below is a YAML map, not a secret
  new RegExp(String.raw`^[ \t]*(export[ \t]+)?${SECRET_WORD}[ \t]*[:=][ \t]*['"]?[^\s'"#][^\n]*$`, 'im'),
]

/** Why a file must not travel, or undefined. */
export function secretReason(path: string, bytes: Buffer): string | undefined {
  if (secretName.test(path)) return 'its name suggests a credential or a hidden file'
  const text = bytes.subarray(0, MAX_FILE).toString('utf8')
  if (secretContent.some((re) => re.test(text))) return 'it appears to contain a credential'
  return undefined
}

export async function collectBundleFiles(b: LoadedBundle, onEvent: OnEvent): Promise<BundleFile[]> {
  const files: BundleFile[] = [{path: 'bundle.yaml', bytes: Buffer.from(b.raw, 'utf8')}]
  if (!b.dir) return files
  const root = b.dir
  const found: string[] = []
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir)).sort()
    for (const name of entries) {
      const full = join(dir, name)
      const rel = relative(root, full).split(sep).join('/')
      const st = await lstat(full)
      if (name.startsWith('.')) {
        onEvent({type: 'warning', message: `bundle file ${rel} left out of the archive: hidden files may hold credentials`})
        continue
      }
      // the reader refuses such a member (scan.ts): kpi must never write an archive it cannot read
      const bad = badName(rel)
      if (bad) {
        onEvent({type: 'warning', message: `bundle file ${rel} left out of the archive: it has ${bad}, which an archive member may not have`})
        continue
      }
      if (st.isDirectory()) await walk(full)
      else if (st.isFile()) found.push(rel)
      else onEvent({type: 'warning', message: `bundle file ${rel} left out of the archive: not a regular file`})
    }
  }
  await walk(root)
  let total = files[0]!.bytes.length
  for (const rel of found) {
    if (rel === 'bundle.yaml') continue
    if (files.length >= MAX_FILES) throw new KpiError('input', `bundle directory ${root} has more than ${MAX_FILES} files`, {hint: 'keep only the bundle and its documentation in the directory'})
    const full = join(root, ...rel.split('/'))
    const st = await lstat(full)
    if (st.size > MAX_FILE) throw new KpiError('input', `bundle file ${full} is ${st.size} bytes, more than ${MAX_FILE}`, {hint: 'images travel as images; keep large files out of the bundle directory'})
    const bytes = await readFile(full)
    const why = secretReason(rel, bytes)
    if (why) {
      onEvent({type: 'warning', message: `bundle file ${rel} left out of the archive: ${why}`})
      continue
    }
    total += bytes.length
    if (total > MAX_TOTAL) throw new KpiError('input', `bundle directory ${root} holds more than ${MAX_TOTAL} bytes of files`, {hint: 'keep only the bundle and its documentation in the directory'})
    files.push({path: rel, bytes})
  }
  return files
}
