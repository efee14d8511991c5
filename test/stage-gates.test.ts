/**
 * Which check a stage gate waits on for an object (plan.ts). How gates behave against a real API
 * server (a wait that meets an error, a user who may not read nodes, what preflight asks so the
 * gates can read) is in kube-client.test.ts.
 */
import {describe, expect, it} from 'vitest'
import {planStages} from '../src/apply/plan.js'
import {endpointsReadiness} from '../src/kube/readiness.js'
import {renderPlatform} from '../src/render/render.js'
import {lock17, values} from './fixtures/render/helpers.js'

describe('the check of a Service', () => {
  it('is not endpoints when every Deployment behind it is scaled to 0 (values replicas: 0): no endpoint will ever be ready, the gate would time out', async () => {
    const v = await values()
    v.certInjection.replicas = 0
    const {objects} = renderPlatform(await lock17(), v)
    const planned = planStages(objects).flatMap((s) => s.objects)
    const of = (kind: string, name: string) => planned.find((o) => o.object.kind === kind && o.object.metadata.name === name)!
    expect((of('Deployment', 'cert-injection-webhook').object.spec as {replicas: number}).replicas).toBe(0)
    // what the endpoints check says of it for ever: no pod, no endpoint
    expect(endpointsReadiness([]).state).toBe('progressing')
    expect(of('Service', 'cert-injection-webhook').check).toBe('applied')
    // the Deployment is still waited for (its old pods gone), and a Service with pods still is judged by its endpoints
    expect(of('Deployment', 'cert-injection-webhook').check).toBe('rollout')
    expect(of('Service', 'kpack-webhook').check).toBe('endpoints')
  })
})
