import {execFile} from 'node:child_process'
import {mkdtemp} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'
import {issueCert, makeCA} from '../src/sandbox/pki.js'

const run = promisify(execFile)

describe('sandbox pki', () => {
  it('issues a server certificate that verifies against its CA and names its addresses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpi-pki-'))
    const ca = await makeCA(join(dir, 'ca'))
    const srv = await issueCert(ca, {name: 'srv', commonName: 'registry', dnsNames: ['localhost'], ips: ['127.0.0.1'], usage: 'server'})
    const {stdout} = await run('openssl', ['verify', '-CAfile', ca.cert, srv.cert])
    expect(stdout).toContain(': OK')
    const text = (await run('openssl', ['x509', '-in', srv.cert, '-noout', '-text'])).stdout
    expect(text).toContain('IP Address:127.0.0.1')
    const other = await makeCA(join(dir, 'other'))
    await expect(run('openssl', ['verify', '-CAfile', other.cert, srv.cert])).rejects.toThrow()
  })
})
