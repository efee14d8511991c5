import {execFile} from 'node:child_process'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {KpiError} from '../src/errors.js'
import {makeCA} from '../src/sandbox/pki.js'
import {loadValues, parseValues} from '../src/values/load.js'
import {valuesSchema} from '../src/values/schema.js'
import {caFile, valuesFile} from './fixtures/render/helpers.js'

const run = promisify(execFile)
let dir = ''
let caPem = ''

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpi-values-'))
  caPem = await readFile(caFile, 'utf8')
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

/** Writes `text` as values.yaml in the temp dir and returns the KpiError loadValues throws. */
async function problemsOf(text: string, name = 'values.yaml'): Promise<KpiError> {
  const file = join(dir, name)
  await writeFile(file, text)
  try {
    await loadValues(file)
  } catch (e) {
    expect(e).toBeInstanceOf(KpiError)
    expect((e as KpiError).kind).toBe('input')
    return e as KpiError
  }
  throw new Error('loadValues accepted invalid values')
}

const indent = (s: string, n: number) => s.trimEnd().split('\n').map((l) => ' '.repeat(n) + l).join('\n')

describe('values: accepted', () => {
  it('loads the fixture with defaults filled and noProxy split', async () => {
    const v = await loadValues(valuesFile)
    expect(v.registry).toMatchObject({server: 'registry.corp.example:5000', repository: 'platform/kpack', username: 'robot$kpi'})
    expect(v.caCerts).toHaveLength(1)
    expect(v.proxy?.noProxy).toEqual(['.corp.example', '10.0.0.0/8'])
    expect(v.cluster).toEqual({domain: 'cluster.local', serviceCIDR: ['10.96.0.0/12'], podCIDR: []})
    expect(v.teams.map((t) => [t.name, t.namespace, t.serviceAccount])).toEqual([['payments', 'payments', 'kpi-builds'], ['web', 'team-web', 'kpi-builds']])
    expect(v.kpack.webhook).toEqual({replicas: 1, failurePolicy: 'Fail'})
    expect(v.kpack.controller.replicas).toBe(2)
    // no kpack.features: left out, so the values a revision records are what an earlier kpi recorded
    expect(v.kpack.features).toBeUndefined()
  })

  it('kpack.features: the flags given, kpack\'s defaults for the rest; kpack.controller.scalingFactor', async () => {
    await writeFile(join(dir, 'v-flags.yaml'), 'registry: {server: reg.example, repository: p}\nkpack:\n  controller: {scalingFactor: 3}\n  features: {priorityClasses: true, sshTrustUnknownHosts: false}\n')
    const v = await loadValues(join(dir, 'v-flags.yaml'))
    expect(v.kpack.features).toEqual({
      injectedSidecarSupport: false, priorityClasses: true, slsaAttestation: false, gitShallowClone: false, sshTrustUnknownHosts: false,
    })
    expect(v.kpack.controller).toEqual({replicas: 1, scalingFactor: 3})
    // left out when not given, as features
    expect((await loadValues(valuesFile)).kpack.controller.scalingFactor).toBeUndefined()
    const e = await problemsOf(['registry: {server: r.example, repository: p}', 'kpack:', '  controller: {scalingFactor: 0}', ''].join('\n'))
    expect(e.message).toMatch(/values\.yaml:3:31: kpack\.controller\.scalingFactor: /)
  })

  it('reads passwordFile and dockerConfigJsonFile relative to the values file', async () => {
    await writeFile(join(dir, 'pw.txt'), 'from-a-file\n')
    await writeFile(join(dir, 'v-pw.yaml'), 'registry:\n  server: reg.example\n  repository: p\n  username: u\n  passwordFile: pw.txt\n')
    expect((await loadValues(join(dir, 'v-pw.yaml'))).registry.password).toBe('from-a-file')
    const cfg = JSON.stringify({auths: {'https://reg.example': {auth: Buffer.from('u:p').toString('base64')}}})
    await writeFile(join(dir, 'config.json'), cfg)
    await writeFile(join(dir, 'v-dc.yaml'), 'registry:\n  server: reg.example\n  repository: p\n  dockerConfigJsonFile: config.json\n')
    expect((await loadValues(join(dir, 'v-dc.yaml'))).registry.dockerConfigJson).toBe(cfg)
  })

  it('accepts a CA bundle of several certificates made by openssl', async () => {
    const a = await makeCA(join(dir, 'ca-a'), 'A')
    const b = await makeCA(join(dir, 'ca-b'), 'B')
    const v = await parseValues(`registry: {server: r.example, repository: p}\ncaCerts:\n  - |\n${indent(a.certPem + b.certPem, 4)}\n`, 'v.yaml')
    expect(v.caCerts).toHaveLength(1)
  })

  it("accepts a bundle's comments and openssl's attribute lines between certificates, not other text", async () => {
    const a = await makeCA(join(dir, 'ca-c'), 'C')
    const b = await makeCA(join(dir, 'ca-d'), 'D')
    const annotated = [
      '##', '## Bundle of CA Root Certificates', '##', '', '# Issuer: CN=C', '# SHA256 Fingerprint: 00:11', a.certPem.trimEnd(), '',
      'Bag Attributes', '    friendlyName: corp root', '    localKeyID: 01 02 03', 'subject=CN = D', '', 'issuer=CN = D', b.certPem.trimEnd(),
    ].join('\n')
    const v = await parseValues(`registry: {server: r.example, repository: p}\ncaCerts:\n  - |\n${indent(annotated, 4)}\n`, 'v.yaml')
    expect(v.caCerts).toHaveLength(1)
    const e = await problemsOf(`registry: {server: r.example, repository: p}\ncaCerts:\n  - |\n${indent(a.certPem + 'MIIBtruncatedbase64tail\n', 4)}\n`)
    expect(e.message).toContain('caCerts[0]: malformed PEM: text outside the PEM blocks')
  })
})

describe('values: problems name the field and line', () => {
  it('a misspelt field, with a suggestion', async () => {
    const e = await problemsOf(['registry:', '  server: r.example', '  repository: p', '  usrname: robot', '  password: hunter2-secret', ''].join('\n'))
    expect(e.message).toBe(`${join(dir, 'values.yaml')}:4:3: registry.usrname: unknown field (did you mean username?)`)
    // the message never carries values: the file holds credentials
    expect(e.message).not.toContain('hunter2')
  })

  it('a wrong type', async () => {
    const e = await problemsOf(['registry: {server: r.example, repository: p}', 'kpack:', '  controller:', '    replicas: two', ''].join('\n'))
    expect(e.message).toMatch(/values\.yaml:4:15: kpack\.controller\.replicas: expected an integer, got a string$/)
  })

  it('kpack feature flags: a misspelt flag with a suggestion, a flag that is no boolean', async () => {
    const e = await problemsOf(['registry: {server: r.example, repository: p}', 'kpack:', '  features:', '    injectedSidecarSuport: true', '    priorityClasses: "yes"', ''].join('\n'))
    expect(e.message).toContain('values.yaml:4:5: kpack.features.injectedSidecarSuport: unknown field (did you mean injectedSidecarSupport?)')
    expect(e.message).toMatch(/values\.yaml:5:22: kpack\.features\.priorityClasses: expected true or false, got a string/)
  })

  it('a malformed PEM certificate', async () => {
    const broken = caPem.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!notbase64!!!!!!!')
    const e = await problemsOf(`registry: {server: r.example, repository: p}\ncaCerts:\n  - |\n${indent(caPem, 4)}\n  - |\n${indent(broken, 4)}\n`)
    // the second list item's block scalar starts at its `|` indicator
    const second = 4 + caPem.trimEnd().split('\n').length
    expect(e.message).toMatch(new RegExp(`values\\.yaml:${second}:5: caCerts\\[1\\]: malformed PEM: block 1 is not a valid X\\.509 certificate$`))
  })

  it('a private key where a certificate belongs, and text that is no PEM at all', async () => {
    const e = await problemsOf('registry: {server: r.example, repository: p}\ncaCerts:\n  - "-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----"\n  - just text\n')
    expect(e.message).toContain('3:5: caCerts[0]: malformed PEM: block 1 is a PRIVATE KEY, not a CERTIFICATE')
    expect(e.message).toContain('4:5: caCerts[1]: malformed PEM: no PEM certificate')
  })

  it('node selector values that are no label values: too long, or with a character a label refuses', async () => {
    const e = await problemsOf(['registry: {server: r.example, repository: p}', 'kpack:', '  controller:', '    nodeSelector:',
      `      pool: ${'x'.repeat(64)}`, '      zone: "eu west"', '      ok: platform-1.a_b', '      empty: ""', ''].join('\n'))
    expect(e.message).toContain('values.yaml:5:13: kpack.controller.nodeSelector.pool: must NOT have more than 63 characters')
    expect(e.message).toContain('values.yaml:6:13: kpack.controller.nodeSelector.zone: invalid value: expected a label value: letters, digits, -, _ and ., starting and ending with a letter or digit')
    expect(e.message).not.toContain('nodeSelector.ok')
    expect(e.message).not.toContain('nodeSelector.empty')
  })

  it('node selector keys that are no label keys: a bad prefix, a name over 63 characters, a space', async () => {
    const e = await problemsOf(['registry: {server: r.example, repository: p}', 'kpack:', '  webhook:', '    nodeSelector:',
      '      Example.COM/pool: a', `      example.com/${'n'.repeat(64)}: a`, '      "node pool": a', '      node.kubernetes.io/instance-type: m5.large', '      kubernetes.io/arch: amd64', '      tier: build', ''].join('\n'))
    const key = 'invalid key: expected a label key: an optional DNS subdomain and / (example.com/), then at most 63 letters, digits, -, _ and ., starting and ending with a letter or digit'
    expect(e.message).toContain(`values.yaml:5:7: kpack.webhook.nodeSelector.Example.COM/pool: ${key}`)
    expect(e.message).toContain(`values.yaml:6:7: kpack.webhook.nodeSelector.example.com/${'n'.repeat(64)}: ${key}`)
    expect(e.message).toContain(`values.yaml:7:7: kpack.webhook.nodeSelector.node pool: ${key}`)
    expect(e.message).not.toContain('property name')
    for (const ok of ['instance-type', 'kubernetes.io/arch', 'tier']) expect(e.message).not.toContain(ok)
  })

  it('a proxy without a scheme', async () => {
    const e = await problemsOf('registry: {server: r.example, repository: p}\nproxy:\n  httpsProxy: proxy.corp:3128\n')
    expect(e.message).toMatch(/values\.yaml:3:15: proxy\.httpsProxy: must be a URL with a scheme, e\.g\. http:\/\/proxy\.corp:3128$/)
  })

  it('a proxy needs cluster.serviceCIDR: the controller reaches the apiserver at the kubernetes Service IP', async () => {
    // without it NO_PROXY holds only names, and client-go's in-cluster requests to that IP go to the proxy
    let e = await problemsOf('registry: {server: r.example, repository: p}\nproxy:\n  httpsProxy: http://proxy.corp:3128\n  noProxy: .corp\n')
    expect(e.message).toMatch(/values\.yaml:2:1: proxy: a proxy needs cluster\.serviceCIDR/)
    e = await problemsOf('registry: {server: r.example, repository: p}\nproxy:\n  httpProxy: http://proxy.corp:3128\ncluster:\n  podCIDR: 10.244.0.0/16\n')
    expect(e.message).toMatch(/values\.yaml:2:1: proxy: a proxy needs cluster\.serviceCIDR/)
    await writeFile(join(dir, 'v-proxy.yaml'), 'registry: {server: r.example, repository: p}\nproxy:\n  httpProxy: http://proxy.corp:3128\ncluster:\n  serviceCIDR: 10.96.0.0/12\n')
    expect((await loadValues(join(dir, 'v-proxy.yaml'))).cluster.serviceCIDR).toEqual(['10.96.0.0/12'])
    // the bypass given as an address or CIDR in noProxy, as values files written before this check do
    for (const entry of ['10.96.0.0/12', '10.96.0.1']) {
      await writeFile(join(dir, 'v-proxy-np.yaml'), `registry: {server: r.example, repository: p}\nproxy:\n  httpsProxy: http://proxy.corp:3128\n  noProxy: [.corp, "${entry}"]\n`)
      expect((await loadValues(join(dir, 'v-proxy-np.yaml'))).proxy?.noProxy).toContain(entry)
    }
  })

  it('collects every problem of a file, in line order, with a count', async () => {
    const text = [
      'registry:', //                 1
      '  server: r.example', //       2
      '  repositry: p', //            3  misspelt, and repository is then missing
      'caCerts: ["not a cert"]', //   4
      'proxy:', //                    5
      '  httpProxy: proxy:3128', //   6
      'teams:', //                    7
      '  - name: Bad_Name', //        8
      '    replicas: 2', //           9
      'kpack:', //                    10
      '  webhook:', //                11
      '    failurePolicy: Sometimes', // 12
      '',
    ].join('\n')
    const e = await problemsOf(text)
    const lines = e.message.split('\n')
    expect(lines[0]).toMatch(/values\.yaml: 7 problems in the values file$/)
    const body = lines.slice(1).map((l) => l.trim().replace(`${join(dir, 'values.yaml')}:`, ''))
    expect(body).toEqual([
      '2:3: registry: missing required field repository',
      '3:3: registry.repositry: unknown field (did you mean repository?)',
      '4:11: caCerts[0]: malformed PEM: no PEM certificate (expected -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)',
      '6:14: proxy.httpProxy: must be a URL with a scheme, e.g. http://proxy.corp:3128',
      '8:11: teams[0].name: invalid value: expected a DNS label: lowercase letters, digits and -, starting and ending with a letter or digit',
      '9:5: teams[0].replicas: unknown field (known: name, namespace, serviceAccount, subjects, builders, registry)',
      '12:20: kpack.webhook.failurePolicy: must be one of Fail, Ignore',
    ])
    expect((e.details as {problems: unknown[]}).problems).toHaveLength(7)
  })

  it('credentials: alternatives that exclude each other, and a docker config without the server', async () => {
    let e = await problemsOf('registry:\n  server: r.example\n  repository: p\n  username: u\n')
    expect(e.message).toMatch(/4:3: registry\.username: a username needs password or passwordFile$/)
    e = await problemsOf('registry:\n  server: r.example\n  repository: p\n  username: u\n  password: pw-1234\n  dockerConfigJson: "{}"\n')
    expect(e.message).toContain('registry.dockerConfigJson: give either username/password or a docker config, not both')
    e = await problemsOf(`registry:\n  server: r.example\n  repository: p\n  dockerConfigJson: '{"auths": {"other.example": {"auth": "dTpzZWNyZXQtenp6"}}}'\n`)
    expect(e.message).toMatch(/4:21: registry\.dockerConfigJson: no "auths" entry for r\.example/)
    expect(e.message).not.toContain('dTpzZWNyZXQtenp6')
    e = await problemsOf(`registry:\n  server: r.example\n  repository: p\n  dockerConfigJson: '{"auths": {secret-zzz'\n`)
    expect(e.message).toMatch(/registry\.dockerConfigJson: not valid JSON/)
    expect(e.message).not.toContain('secret-zzz')
    e = await problemsOf('registry:\n  server: r.example\n  repository: p\n  username: u\n  passwordFile: missing.txt\n')
    expect(e.message).toMatch(/5:17: registry\.passwordFile: cannot read .*missing\.txt \(ENOENT\)$/)
  })

  it("a team's own registry account: its password file read relative to the values file, a repository of its own, the same checks as the platform's, named at the team", async () => {
    await writeFile(join(dir, 'team-pw.txt'), 'team-secret-1\n')
    const head = 'registry:\n  server: r.example\n  repository: platform\n  username: u\n  password: pw-1234\nteams:\n'
    await writeFile(join(dir, 'v-team.yaml'), head + '  - name: a\n    registry: {repository: teams/a, username: a-robot, passwordFile: team-pw.txt}\n  - name: b\n')
    const v = await loadValues(join(dir, 'v-team.yaml'))
    expect(v.teams[0]!.registry).toEqual({repository: 'teams/a', username: 'a-robot', password: 'team-secret-1'})
    // a team without one has no registry field at all: the values recorded before stay as they were
    expect(Object.keys(v.teams[1]!)).not.toContain('registry')
    let e = await problemsOf(head + '  - name: a\n    registry:\n      username: a-robot\n')
    expect(e.message).toMatch(/9:7: teams\[0\]\.registry\.username: a username needs password or passwordFile$/)
    e = await problemsOf(head + `  - name: a\n    registry:\n      dockerConfigJson: '{"auths": {"other.example": {"auth": "dTpzZWNyZXQtenp6"}}}'\n`)
    expect(e.message).toMatch(/9:25: teams\[0\]\.registry\.dockerConfigJson: no "auths" entry for r\.example/)
    expect(e.message).not.toContain('dTpzZWNyZXQtenp6')
    e = await problemsOf(head + '  - name: a\n    registry:\n      username: a-robot\n      passwordFile: nowhere.txt\n')
    expect(e.message).toMatch(/10:21: teams\[0\]\.registry\.passwordFile: cannot read .*nowhere\.txt \(ENOENT\)$/)
    e = await problemsOf(head + '  - name: a\n    registry:\n      server: other.example\n')
    expect(e.message).toMatch(/teams\[0\]\.registry\.server: unknown field/)
  })

  it("credentials: a username with ':' is refused (the auth kpack and the kubelet decode would split it)", async () => {
    const e = await problemsOf('registry:\n  server: r.example\n  repository: p\n  username: "corp:robot"\n  password: pw-1234\n')
    expect(e.message).toMatch(/4:13: registry\.username: a username cannot contain ':'/)
    expect(e.message).not.toContain('corp:robot')
  })

  it('resources the apiserver would refuse: a negative quantity, a request above its limit', async () => {
    const e = await problemsOf([
      'registry: {server: r.example, repository: p}',
      'kpack:',
      '  controller:',
      '    resources:',
      '      requests: {cpu: "2", memory: 512Mi}',
      '      limits: {cpu: 1500m, memory: 1Gi}',
      '  webhook:',
      '    resources: {requests: {cpu: 700m}, limits: {cpu: 0.7}}',
      'certInjection:',
      '  resources:',
      '    requests: {memory: -1}',
      '',
    ].join('\n'))
    expect(e.message).toContain('5:23: kpack.controller.resources.requests.cpu: more than its limit (limits.cpu); the apiserver refuses a request above its limit')
    expect(e.message).toContain('11:24: certInjection.resources.requests.memory: must not be negative')
    expect(e.message).not.toContain('requests.memory: more')
    // 700m is 0.7, though not in floating point
    expect(e.message).not.toContain('kpack.webhook')
  })

  it('tolerations the apiserver would refuse', async () => {
    const e = await problemsOf([
      'registry: {server: r.example, repository: p}',
      'kpack:',
      '  webhook:',
      '    tolerations:',
      '      - {key: dedicated, operator: Exists, value: build}', // 5
      '      - {value: build}', //                                  6
      '      - {key: dedicated, operator: Exists, effect: NoSchedule, tolerationSeconds: 30}', // 7
      '      - {key: "bad key", value: build}', //                   8
      '      - {key: dedicated, value: "not a label value"}', //     9
      '      - {key: dedicated, value: build, effect: NoSchedule}', // 10: fine
      '      - {operator: Exists}', //                              11: fine, tolerates every taint
      '      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 60}', // 12: fine
      '',
    ].join('\n'))
    const body = e.message.split('\n').slice(1).map((l) => l.trim().replace(`${join(dir, 'values.yaml')}:`, ''))
    expect(body).toEqual([
      "5:51: kpack.webhook.tolerations[0].value: must be empty with operator Exists",
      "6:9: kpack.webhook.tolerations[1].operator: must be Exists when there is no key (a toleration of every taint)",
      "7:52: kpack.webhook.tolerations[2].effect: must be NoExecute when tolerationSeconds is set",
      expect.stringMatching(/^8:15: kpack\.webhook\.tolerations\[3\]\.key: invalid value: expected a label key/),
      expect.stringMatching(/^9:33: kpack\.webhook\.tolerations\[4\]\.value: invalid value: expected a label value/),
    ])
  })

  it('teams: a ServiceAccount subject needs a service account name, as RBAC validates it', async () => {
    // the username form is a User subject's; as a ServiceAccount's name the apiserver refuses the RoleBinding
    const e = await problemsOf('registry: {server: r.example, repository: p}\nteams:\n  - name: a\n    subjects:\n      - {kind: ServiceAccount, name: "system:serviceaccount:ci:deployer"}\n      - {kind: User, name: "system:serviceaccount:ci:deployer"}\n      - {kind: ServiceAccount, name: deployer, namespace: ci}\n')
    expect(e.message).toMatch(/values\.yaml:5:38: teams\[0\]\.subjects\[0\]\.name: invalid value: expected a DNS subdomain/)
    expect((e.details as {problems: unknown[]}).problems).toHaveLength(1)
  })

  it('teams: duplicates and reserved namespaces; CIDRs', async () => {
    const e = await problemsOf('registry: {server: r.example, repository: p}\ncluster:\n  serviceCIDR: [10.96.0.0/12, 10.96.0.0]\nteams:\n  - name: a\n  - name: b\n    namespace: a\n  - name: kpack\n')
    expect(e.message).toContain('3:31: cluster.serviceCIDR[1]: expected a CIDR such as 10.96.0.0/12')
    expect(e.message).toContain('7:16: teams[1].namespace: namespace a is already used by teams[0]')
    expect(e.message).toContain('8:11: teams[2].name: namespace kpack is reserved')
  })

  it("teams: kpi's own namespaces are reserved too (cert-injection-webhook, kpi-system)", async () => {
    // a team there would render cert-injection-webhook's Namespace twice, and its RoleBinding would
    // let the team manage the webhook's serving key or kpi's revision records
    const e = await problemsOf('registry: {server: r.example, repository: p}\nteams:\n  - name: cert-injection-webhook\n  - name: ops\n    namespace: kpi-system\n')
    expect(e.message).toContain('3:11: teams[0].name: namespace cert-injection-webhook is reserved')
    expect(e.message).toContain('5:16: teams[1].namespace: namespace kpi-system is reserved')
  })

  it('YAML syntax errors and a missing file', async () => {
    let e = await problemsOf('registry:\n  server: [unclosed\n')
    expect(e.message).toMatch(/values\.yaml:\d+:\d+: YAML syntax: /)
    e = await problemsOf('registry: {server: a, repository: p}\nregistry: {server: b, repository: p}\n')
    expect(e.message).toMatch(/values\.yaml:2:1: YAML syntax: Map keys must be unique/)
    await expect(loadValues(join(dir, 'nope.yaml'))).rejects.toThrow(/cannot read the values file \(ENOENT\)/)
  })
})

describe('kpi values schema', () => {
  it('prints the JSON schema, closed everywhere', async () => {
    const root = join(import.meta.dirname, '..')
    const {stdout} = await run(process.execPath, [join(root, 'bin/run.js'), 'values', 'schema'], {cwd: root})
    const printed = JSON.parse(stdout) as typeof valuesSchema
    expect(printed).toEqual(JSON.parse(JSON.stringify(valuesSchema)))
    // every object schema with properties is closed, so typos are errors
    const open: string[] = []
    const visit = (s: unknown, path: string) => {
      if (!s || typeof s !== 'object') return
      const o = s as Record<string, unknown>
      if (o.properties && o.additionalProperties !== false) open.push(path)
      for (const [k, v] of Object.entries(o)) visit(v, `${path}/${k}`)
    }
    visit(printed, '')
    expect(open).toEqual([])
  })
})
