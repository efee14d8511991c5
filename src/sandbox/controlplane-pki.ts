/**
 * The control plane's certificates and kubeconfigs: a cluster CA signing the apiserver's serving
 * certificate and the client certificates of the admin and the controllers, the ServiceAccount
 * signing key pair, and the aggregation layer's front-proxy CA, as kubeadm lays them out.
 */
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {stringify} from 'yaml'
import {issueCert, makeCA, makeKeyPair, type CA, type CertFiles} from './pki.js'

// The first address of the service CIDR (controlplane.ts), which the `kubernetes` service gets; named in the serving cert.
const SERVICE_IP = '10.96.0.1'

export interface Pki {
  ca: CA
  apiserver: CertFiles
  admin: CertFiles
  kcm: CertFiles
  scheduler: CertFiles
  kcmServing: CertFiles
  schedServing: CertFiles
  sa: {key: string; pub: string}
  frontProxyCa: CA
  frontProxyClient: CertFiles
}

export async function makePki(dir: string): Promise<Pki> {
  const [ca, frontProxyCa] = await Promise.all([
    makeCA(dir, 'kpi sandbox kubernetes CA'),
    makeCA(join(dir, 'front-proxy'), 'kpi sandbox front-proxy CA'),
  ])
  const loopback = {dnsNames: ['localhost'], ips: ['127.0.0.1'], usage: 'server' as const}
  const [apiserver, admin, kcm, scheduler, kcmServing, schedServing, sa, frontProxyClient] = await Promise.all([
    issueCert(ca, {
      name: 'apiserver', commonName: 'kube-apiserver', usage: 'server', ips: ['127.0.0.1', SERVICE_IP],
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
    }),
    issueCert(ca, {name: 'admin', commonName: 'kpi-admin', organizations: ['system:masters'], usage: 'client'}),
    issueCert(ca, {name: 'kube-controller-manager', commonName: 'system:kube-controller-manager', usage: 'client'}),
    issueCert(ca, {name: 'kube-scheduler', commonName: 'system:kube-scheduler', usage: 'client'}),
    issueCert(ca, {name: 'kube-controller-manager-serving', commonName: 'kube-controller-manager', ...loopback}),
    issueCert(ca, {name: 'kube-scheduler-serving', commonName: 'kube-scheduler', ...loopback}),
    makeKeyPair(dir, 'service-account'),
    issueCert(frontProxyCa, {name: 'front-proxy-client', commonName: 'front-proxy-client', usage: 'client'}),
  ])
  return {ca, apiserver, admin, kcm, scheduler, kcmServing, schedServing, sa, frontProxyCa, frontProxyClient}
}

/** A kubeconfig with the CA and client certificate embedded, so it can be copied anywhere. */
export async function writeKubeconfig(file: string, server: string, ca: CA, client: CertFiles, user: string): Promise<void> {
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{name: 'kpi-sandbox', cluster: {server, 'certificate-authority-data': b64(ca.certPem)}}],
    users: [{name: user, user: {
      'client-certificate-data': b64(client.certPem),
      'client-key-data': b64(await readFile(client.key, 'utf8')),
    }}],
    contexts: [{name: 'kpi-sandbox', context: {cluster: 'kpi-sandbox', user}}],
    'current-context': 'kpi-sandbox',
  }
  await writeFile(file, stringify(doc), {mode: 0o600})
}
