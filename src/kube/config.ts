/**
 * Finds the cluster the way kubectl does: --kubeconfig, else $KUBECONFIG (files joined by the path
 * separator, first one wins per entry), else ~/.kube/config, else the in-cluster service account;
 * then --context or the current context. Problems become one line naming the file or context.
 */
import {existsSync} from 'node:fs'
import {homedir} from 'node:os'
import {delimiter, join} from 'node:path'
import {KubeConfig} from '@kubernetes/client-node'
import {KpiError} from '../errors.js'

export interface KubeTarget {
  /** path of a kubeconfig file (--kubeconfig); wins over $KUBECONFIG */
  kubeconfig?: string
  /** context name (--context); default: the kubeconfig's current context */
  context?: string
}

export interface LoadedKubeConfig {
  kc: KubeConfig
  /** the API server URL of the chosen context */
  server: string
  context: string
  /** where the configuration came from, for messages (never holds a secret) */
  source: string
}

const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token'

const hint = 'pass --kubeconfig FILE and --context NAME, or set $KUBECONFIG'

export function loadKubeConfig(target: KubeTarget = {}, env: NodeJS.ProcessEnv = process.env): LoadedKubeConfig {
  const kc = new KubeConfig()
  let source: string
  const files = target.kubeconfig ? [target.kubeconfig] : (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean)
  if (files.length) {
    for (const f of files) {
      if (!existsSync(f)) {
        throw new KpiError('input', `kubeconfig ${f} does not exist`, {hint: target.kubeconfig ? 'check the --kubeconfig path' : `fix $KUBECONFIG or ${hint}`})
      }
    }
    source = target.kubeconfig ? `--kubeconfig ${target.kubeconfig}` : `$KUBECONFIG (${files.join(delimiter)})`
    loadFiles(kc, files)
  } else {
    const home = join(env.HOME || homedir(), '.kube', 'config')
    if (existsSync(home)) {
      source = home
      loadFiles(kc, [home])
    } else if (existsSync(SA_TOKEN)) {
      source = 'the in-cluster service account'
      kc.loadFromCluster()
    } else {
      throw new KpiError('input', `no kubeconfig: ${home} does not exist and $KUBECONFIG is not set`, {hint})
    }
  }
  if (target.context) {
    if (!kc.getContextObject(target.context)) {
      const names = kc.getContexts().map((c) => c.name)
      throw new KpiError('usage', `--context ${target.context} is not a context of ${source}`, {
        hint: names.length ? `use one of: ${names.join(', ')}` : 'the kubeconfig has no contexts',
      })
    }
    kc.setCurrentContext(target.context)
  }
  const context = kc.getCurrentContext()
  const cluster = kc.getCurrentCluster()
  if (!context || !cluster) {
    throw new KpiError('input', `${source} has no current context${context ? ` (context ${context} names no cluster)` : ''}`, {hint})
  }
  if (!kc.getCurrentUser()) throw new KpiError('input', `context ${context} of ${source} names no user`, {hint})
  return {kc, server: cluster.server, context, source}
}

function loadFiles(kc: KubeConfig, files: string[]): void {
  try {
    kc.loadFromFile(files[0]!)
    for (const f of files.slice(1)) {
      const more = new KubeConfig()
      more.loadFromFile(f)
      kc.mergeConfig(more, true)
    }
  } catch (e) {
    throw new KpiError('input', `cannot load kubeconfig ${files.join(delimiter)}: ${(e as Error).message.split('\n')[0]}`, {hint})
  }
}
