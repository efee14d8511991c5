/**
 * The pod runner on a real control plane: a Deployment whose image stands for a program (here a
 * small webhook fixture) runs as a process in its own network namespace at the pod's address, with
 * the pod's env, volumes and ServiceAccount token; the apiserver calls it as an admission webhook
 * through the Service's endpoints; a rollout replaces the process and a deletion stops it before the
 * pod leaves the API.
 */
import {AdmissionregistrationV1Api, AppsV1Api, CoreV1Api, type KubeConfig} from '@kubernetes/client-node'
import {execFileSync} from 'node:child_process'
import {get, type RequestOptions} from 'node:https'
import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, expect, it} from 'vitest'
import {useControlPlane} from './helpers/controlplane.js'
import {issueCert, makeCA} from '../src/sandbox/pki.js'
import {waitFor} from '../src/sandbox/procs.js'

const probe = fileURLToPath(new URL('./fixtures/pod-programs/probe-webhook.mjs', import.meta.url))
const PROBE_IMAGE = `registry.invalid/probe@sha256:${'a'.repeat(64)}`
const NS = 'probe'

const plane = useControlPlane('podrunner', {
  pods: {binaryFor: (image) => (image === PROBE_IMAGE ? {cmd: process.execPath, args: [probe]} : undefined)},
})

/** Names of the network namespaces on the machine. */
const netnsList = () => execFileSync('ip', ['netns', 'list'], {encoding: 'utf8'}).split('\n').map((l) => l.split(' ')[0])

/** Creating a ConfigMap labelled probe=deny: the webhook's denial message, or undefined when admitted. */
async function denial(core: CoreV1Api, name: string): Promise<string | undefined> {
  try {
    await core.createNamespacedConfigMap({namespace: NS, body: {metadata: {name, labels: {probe: 'deny'}}}})
    await core.deleteNamespacedConfigMap({name, namespace: NS})
    return undefined
  } catch (e) {
    return String((e as {body?: unknown}).body ?? e)
  }
}

/** How many pod LISTs the apiserver has served (its request counter, every client). */
async function podLists(kc: KubeConfig): Promise<number> {
  const o: RequestOptions = {}
  await kc.applyToHTTPSOptions(o)
  const text = await new Promise<string>((resolve, reject) => {
    get(`${kc.getCurrentCluster()!.server}/metrics`, o, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve(body)).on('error', reject)
    }).on('error', reject)
  })
  return text.split('\n')
    .filter((l) => l.startsWith('apiserver_request_total{') && l.includes('verb="LIST"') && l.includes('resource="pods"'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0)
}

describe('pod runner', () => {
  it('runs a webhook pod for real: env, volumes, token, pod address; a rollout replaces it, a deletion stops it', async () => {
    plane.nameRunDir()
    const {cp, kc} = plane
    const core = kc.makeApiClient(CoreV1Api)
    const apps = kc.makeApiClient(AppsV1Api)
    const admission = kc.makeApiClient(AdmissionregistrationV1Api)
    expect(cp.podCidr).toMatch(/^10\.244\.\d+\.0\/24$/)

    const ca = await makeCA(join(plane.runDir, 'probe-ca'), 'probe CA')
    const tls = await issueCert(ca, {name: 'probe', commonName: 'probe', dnsNames: [`probe.${NS}.svc`], usage: 'server'})
    await core.createNamespace({body: {metadata: {name: NS}}})
    await core.createNamespacedConfigMap({namespace: NS, body: {metadata: {name: 'probe-config'}, data: {greeting: 'hello', motd: 'from a volume'}}})
    await core.createNamespacedSecret({namespace: NS, body: {metadata: {name: 'probe-tls'}, type: 'kubernetes.io/tls', stringData: {
      'tls.crt': tls.certPem, 'tls.key': await readFile(tls.key, 'utf8'),
    }}})
    await core.createNamespacedService({namespace: NS, body: {metadata: {name: 'probe'}, spec: {selector: {app: 'probe'}, ports: [{port: 443, targetPort: 8443}]}}})
    const labels = {app: 'probe'}
    await apps.createNamespacedDeployment({namespace: NS, body: {
      metadata: {name: 'probe'},
      spec: {
        replicas: 1,
        selector: {matchLabels: labels},
        template: {metadata: {labels}, spec: {
          containers: [{
            name: 'probe',
            image: PROBE_IMAGE,
            // the runner's readiness probe: Ready once something accepts connections here
            ports: [{containerPort: 8443}],
            env: [
              {name: 'PROBE_GREETING', valueFrom: {configMapKeyRef: {name: 'probe-config', key: 'greeting'}}},
              {name: 'POD_IP', valueFrom: {fieldRef: {fieldPath: 'status.podIP'}}},
              {name: 'POD_NAMESPACE', valueFrom: {fieldRef: {fieldPath: 'metadata.namespace'}}},
              {name: 'NODE_EXTRA_CA_CERTS', value: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'},
            ],
            volumeMounts: [
              {name: 'config', mountPath: '/etc/probe/config', readOnly: true},
              {name: 'tls', mountPath: '/etc/probe/tls', readOnly: true},
            ],
          }],
          volumes: [{name: 'config', configMap: {name: 'probe-config'}}, {name: 'tls', secret: {secretName: 'probe-tls'}}],
        }},
      },
    }})
    await admission.createValidatingWebhookConfiguration({body: {
      metadata: {name: 'probe.kpi.test'},
      webhooks: [{
        name: 'probe.kpi.test',
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: 'Fail',
        clientConfig: {service: {name: 'probe', namespace: NS, port: 443}, caBundle: Buffer.from(ca.certPem).toString('base64')},
        rules: [{apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps']}],
        objectSelector: {matchLabels: {probe: 'deny'}},
      }],
    }})

    // a pod whose image stands for no program: KWOK alone plays it, and the runner makes it Ready at once
    await apps.createNamespacedDeployment({namespace: NS, body: {
      metadata: {name: 'plain'},
      spec: {replicas: 1, selector: {matchLabels: {app: 'plain'}}, template: {metadata: {labels: {app: 'plain'}}, spec: {
        containers: [{name: 'plain', image: 'registry.invalid/plain:1', ports: [{containerPort: 80}]}],
      }}},
    }})
    const runner = cp.podRunner!
    const first = await waitFor(async () => {
      const msg = await denial(core, 'c1')
      return msg?.includes('probe says') ? msg : undefined
    }, {what: 'the probe webhook to deny', timeoutMs: 60_000, logFile: runner.logFile})
    const [pod] = runner.running()
    expect(pod).toBeDefined()
    expect(first).toContain(`probe says hello|from a volume|system:serviceaccount:${NS}:default|${pod!.ip}|${NS}|`)
    // its temporary files go to a directory of the pod's own, not the host's /tmp, and go with it
    const scratch = new RegExp(`\\|(/[^|"]*/pods/${NS}_${pod!.name.split('/')[1]}_[^/]+/tmp/probe-\\w+)`).exec(first)?.[1]
    expect(scratch, first).toBeDefined()
    expect(existsSync(scratch!)).toBe(true)
    expect(cp.podCidr!.startsWith(pod!.ip.split('.').slice(0, 3).join('.'))).toBe(true)
    expect(await readFile(pod!.logFile, 'utf8')).toContain('probe listening as hello')
    const podReady = async (name: string) => (await core.readNamespacedPod({name, namespace: NS})).status?.conditions?.find((c) => c.type === 'Ready')?.status
    expect(await waitFor(() => podReady(pod!.name.split('/')[1]!).then((s) => s === 'True' || undefined), {what: 'the probe pod Ready', timeoutMs: 30_000})).toBe(true)
    const plain = await waitFor(async () => (await apps.readNamespacedDeployment({name: 'plain', namespace: NS})).status?.availableReplicas === 1 || undefined, {
      what: 'the plain deployment available', timeoutMs: 30_000,
    })
    expect(plain).toBe(true)
    expect(runner.running().map((r) => r.name)).not.toContainEqual(expect.stringContaining('plain'))

    // with every pod running and ready, the runner waits on its watch instead of listing pods
    const listed = await podLists(kc)
    await new Promise((r) => setTimeout(r, 3000))
    expect(await podLists(kc) - listed, 'pod LISTs in 3 s with nothing changing').toBeLessThanOrEqual(1)

    // a rollout replaces the pod, and the runner its process
    await apps.patchNamespacedDeployment({name: 'probe', namespace: NS, body: [
      {op: 'add', path: '/spec/template/metadata/annotations', value: {restartedAt: String(Date.now())}},
    ]})
    const second = await waitFor(() => {
      const r = runner.running()
      return r.length === 1 && r[0]!.uid !== pod!.uid ? r[0] : undefined
    }, {what: 'the rollout to replace the probe process', timeoutMs: 60_000, logFile: runner.logFile})
    expect(() => process.kill(pod!.pid, 0)).toThrow()
    await waitFor(() => !existsSync(scratch!) || undefined, {what: `the old pod's temporary directory ${scratch!} to go`, timeoutMs: 10_000})
    await waitFor(async () => (await denial(core, 'c2'))?.includes(`|${second!.ip}|`), {what: 'the new probe process to answer', timeoutMs: 60_000})

    // a deleted pod stops its process and its network namespace goes
    const nsName = `kpi-${cp.podCidr!.split('.')[2]}-${second!.ip.split('.')[3]}`
    expect(netnsList()).toContain(nsName)
    // as a kubelet does, the pod stays in the API (terminating) until its process is dead: a pod
    // that vanished first would let a rollout pass for done while the old webhook still answers
    const podName = second!.name.split('/')[1]!
    await apps.deleteNamespacedDeployment({name: 'probe', namespace: NS})
    const gone = await waitFor(async () => {
      // read first, then look at the process: alive after the pod was seen gone is the fault
      if (await core.readNamespacedPod({name: podName, namespace: NS}).catch(() => undefined)) return undefined
      try {
        process.kill(second!.pid, 0)
        return {aliveWhenGone: true}
      } catch {
        return {aliveWhenGone: false}
      }
    }, {what: 'the probe pod to leave the API', timeoutMs: 60_000, intervalMs: 20, logFile: runner.logFile})
    expect(gone.aliveWhenGone).toBe(false)
    expect(runner.running()).toEqual([])
    expect(() => process.kill(second!.pid, 0)).toThrow()
    expect(netnsList()).not.toContain(nsName)
  })
})
