/**
 * The ConfigMaps or Secrets a pod spec reads: what its pods take in once, at start. Used to roll a
 * Deployment when one of them changes (config-checksum.ts, apply/secret-versions.ts).
 */
export interface PodSpecReads {
  volumes?: Array<{
    configMap?: {name?: string}
    secret?: {secretName?: string}
    projected?: {sources?: Array<{configMap?: {name?: string}; secret?: {name?: string}}>}
  }>
  containers?: ContainerReads[]
  initContainers?: ContainerReads[]
}

interface ContainerReads {
  env?: Array<{valueFrom?: {configMapKeyRef?: {name?: string}; secretKeyRef?: {name?: string}}}>
  envFrom?: Array<{configMapRef?: {name?: string}; secretRef?: {name?: string}}>
}

/** The names, sorted, of the ConfigMaps or Secrets the spec's volumes, env and envFrom read. */
export function podReads(spec: PodSpecReads, kind: 'ConfigMap' | 'Secret'): string[] {
  const cm = kind === 'ConfigMap'
  const names = new Set<string>()
  const add = (n: string | undefined) => n && names.add(n)
  for (const v of spec.volumes ?? []) {
    add(cm ? v.configMap?.name : v.secret?.secretName)
    for (const s of v.projected?.sources ?? []) add(cm ? s.configMap?.name : s.secret?.name)
  }
  for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
    for (const e of c.env ?? []) add(cm ? e.valueFrom?.configMapKeyRef?.name : e.valueFrom?.secretKeyRef?.name)
    for (const e of c.envFrom ?? []) add(cm ? e.configMapRef?.name : e.secretRef?.name)
  }
  return [...names].sort()
}
