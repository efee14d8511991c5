/**
 * KPI_REGISTRY_TIMEOUT (README, "Relocate") is how long any registry may stay silent: install,
 * upgrade, diff and rollback, which check the platform's images in the registry and have no
 * --registry-timeout flag, take it too.
 */
import {afterEach, describe, expect, it} from 'vitest'
import {registryOptions} from '../src/cli/operation.js'

const saved = process.env.KPI_REGISTRY_TIMEOUT
afterEach(() => {
  if (saved === undefined) delete process.env.KPI_REGISTRY_TIMEOUT
  else process.env.KPI_REGISTRY_TIMEOUT = saved
})

describe('the registry check of install, upgrade, diff and rollback', () => {
  it('takes KPI_REGISTRY_TIMEOUT; unset or empty leaves the default', async () => {
    process.env.KPI_REGISTRY_TIMEOUT = '7s'
    expect((await registryOptions({})).timeoutMs).toBe(7000)
    process.env.KPI_REGISTRY_TIMEOUT = ''
    expect((await registryOptions({})).timeoutMs).toBeUndefined()
    delete process.env.KPI_REGISTRY_TIMEOUT
    expect((await registryOptions({})).timeoutMs).toBeUndefined()
  })

  it('refuses a KPI_REGISTRY_TIMEOUT that is not a duration, naming it', async () => {
    process.env.KPI_REGISTRY_TIMEOUT = 'soon'
    await expect(registryOptions({})).rejects.toThrow(/KPI_REGISTRY_TIMEOUT "soon" is not a duration/)
  })
})
