import type { ObservedInstance, ObservedSubscription } from '@pgmesh/model'
import { type DatabaseSpec, instanceId } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { outcome, REPLICATION_FAILURE_BOUND_MS } from './outcome.js'
import type { DesiredDatabase } from './types.js'

// outcome() returns one small value per scenario, so the expected value sits next to each scenario instead of in a
// golden file: the test reads as the spec.

const UPDATED_AT = '2025-06-01T12:00:00Z'
/** The task started at UPDATED_AT and is judged 10 minutes later. */
const CLOCK = { now: Date.parse(UPDATED_AT) + 600_000, taskStartedAt: Date.parse(UPDATED_AT) }
const ALL = new Set(['host-1', 'host-2', 'host-3'])
const ADDRESSES: Record<string, string> = { 'host-1': '10.0.0.1', 'host-2': '10.0.0.2', 'host-3': '10.0.0.3' }

/** Three nodes; n1 has a streaming replica on host-3. */
const storefront: DatabaseSpec = {
  database_name: 'storefront',
  postgres_version: '17.6',
  spock_version: '5',
  port: 5432,
  nodes: [
    { name: 'n1', host_ids: ['host-1', 'host-3'] },
    { name: 'n2', host_ids: ['host-2'] },
    { name: 'n3', host_ids: ['host-3'], port: 5433 }
  ],
  database_users: [{ username: 'admin', password: 'storefront-admin-secret', db_owner: true, attributes: ['LOGIN'] }],
  postgresql_conf: { max_connections: 200 }
}

const sandbox: DatabaseSpec = {
  database_name: 'sandbox',
  postgres_version: '16.10',
  port: 0,
  nodes: [{ name: 'n1', host_ids: ['host-1'] }],
  database_users: [{ username: 'dev', password: 'sandbox-dev-secret', db_owner: true, attributes: ['LOGIN'] }],
  postgresql_conf: { fsync: false }
}

function database (id: string, spec: DatabaseSpec | undefined, patch: Partial<DesiredDatabase> = {}): DesiredDatabase {
  return { id, generation: 2, deleted: false, paused: false, spec, sources: {}, ...patch }
}

function replicating (nodeName: string, ...providers: string[]): ObservedSubscription[] {
  return providers.map(p => ({ provider_node: p, name: `sub_${p}_${nodeName}`, status: 'replicating' }))
}

function instance (databaseId: string, nodeName: string, hostId: string, patch: Partial<ObservedInstance> = {}): ObservedInstance {
  return {
    id: instanceId(databaseId, nodeName, hostId), database_id: databaseId, node_name: nodeName, host_id: hostId, state: 'available', role: 'primary',
    port: 5432, addresses: [ADDRESSES[hostId] ?? '127.0.0.1'], postgres_version: '17.6', generation: 2, node_ready: true, replication: 'spock',
    updated_at: UPDATED_AT, ...patch
  }
}

/** Every instance of storefront at generation 2, every primary subscribed to both other nodes. */
function converged (): ObservedInstance[] {
  return [
    instance('storefront', 'n1', 'host-1', { subscriptions: replicating('n1', 'n2', 'n3') }),
    instance('storefront', 'n1', 'host-3', { role: 'replica', node_ready: undefined, replication: undefined }),
    instance('storefront', 'n2', 'host-2', { subscriptions: replicating('n2', 'n1', 'n3') }),
    instance('storefront', 'n3', 'host-3', { port: 5433, subscriptions: replicating('n3', 'n1', 'n2') })
  ]
}

function patched (instances: ObservedInstance[], id: string, patch: Partial<ObservedInstance>): ObservedInstance[] {
  if (!instances.some(i => i.id === id)) throw new Error(`no instance ${id}`)
  return instances.map(i => i.id === id ? { ...i, ...patch } : i)
}

const db = database('storefront', storefront)

describe('outcome', () => {
  describe('running', () => {
    it('nothing reported yet', () => {
      expect(outcome(db, [], ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('an instance still being created or modified', () => {
      expect(outcome(db, patched(converged(), 'storefront-n2-9ptayhma', { state: 'creating' }), ALL, CLOCK)).toEqual({ status: 'running' })
      expect(outcome(db, patched(converged(), 'storefront-n2-9ptayhma', { state: 'modifying' }), ALL, CLOCK)).toEqual({ status: 'running' })
      expect(outcome(db, patched(converged(), 'storefront-n2-9ptayhma', { state: 'degraded' }), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('an instance available but still at the previous generation', () => {
      expect(outcome(db, patched(converged(), 'storefront-n3-ant97dj4', { generation: 1 }), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('an instance at the generation whose restart still waits for its turn in the rolling restart', () => {
      expect(outcome(db, patched(converged(), 'storefront-n3-ant97dj4', { pending_restart: true }), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('the replica of n1 missing', () => {
      expect(outcome(db, converged().filter(i => i.id !== 'storefront-n1-ant97dj4'), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('an instance not reported because its host is unreachable', () => {
      expect(outcome(db, converged().filter(i => i.host_id !== 'host-2'), new Set(['host-1', 'host-3']), CLOCK)).toEqual({ status: 'running' })
    })

    it('a primary not subscribed to every other node yet', () => {
      expect(outcome(db, patched(converged(), 'storefront-n1-689qacsi', { subscriptions: replicating('n1', 'n2') }), ALL, CLOCK)).toEqual({ status: 'running' })
      expect(outcome(db, patched(converged(), 'storefront-n1-689qacsi', { subscriptions: undefined }), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('a subscription that exists but is not replicating', () => {
      const subscriptions = [{ provider_node: 'n2', name: 'sub_n2_n3', status: 'replicating' }, { provider_node: 'n1', name: 'sub_n1_n3', status: 'initializing' }]
      expect(outcome(db, patched(converged(), 'storefront-n3-ant97dj4', { subscriptions }), ALL, CLOCK)).toEqual({ status: 'running' })
      const down = subscriptions.map(s => ({ ...s, status: s.provider_node === 'n1' ? 'down' : s.status }))
      expect(outcome(db, patched(converged(), 'storefront-n3-ant97dj4', { subscriptions: down }), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('a failure from an earlier generation is not this task\'s failure', () => {
      const stale = patched(converged(), 'storefront-n2-9ptayhma', { state: 'failed', generation: 1, error: 'could not start: port 5432 in use' })
      expect(outcome(db, stale, ALL, CLOCK)).toEqual({ status: 'running' })
    })
  })

  describe('completed', () => {
    it('every instance available at the generation, every primary replicating from every other node', () => {
      expect(outcome(db, converged(), ALL, CLOCK)).toEqual({ status: 'completed' })
    })

    it('replicas need no subscriptions; instances ahead of the generation count; other databases do not matter', () => {
      const instances = [
        ...patched(converged(), 'storefront-n2-9ptayhma', { generation: 3 }),
        instance('ledger', 'n1', 'host-1', { state: 'failed', error: 'initdb failed' }),
        instance('ledger', 'n2', 'host-2', { state: 'creating' })
      ]
      expect(outcome(db, instances, ALL, CLOCK)).toEqual({ status: 'completed' })
    })

    it('for a create or update, reachability is not consulted: what is reported counts (the caller leaves out unreachable hosts)', () => {
      expect(outcome(db, converged(), new Set(['host-1']), CLOCK)).toEqual({ status: 'completed' })
    })

    it('a single-node database completes without subscriptions', () => {
      const single = database('sandbox', sandbox, { generation: 1 })
      const n1 = instance('sandbox', 'n1', 'host-1', { generation: 1, port: 5450, addresses: ['127.0.0.1'], postgres_version: '16.10' })
      expect(outcome(single, [n1], ALL, CLOCK)).toEqual({ status: 'completed' })
      expect(outcome(single, [{ ...n1, subscriptions: [] }], ALL, CLOCK)).toEqual({ status: 'completed' })
      expect(outcome(single, [{ ...n1, state: 'modifying' }], ALL, CLOCK)).toEqual({ status: 'running' })
    })

    // An update that removes n3 is not done while host-3 still runs n3 (n1 and n2 may still subscribe to it).
    it('not before the instance of a removed node is gone', () => {
      const withoutN3 = database('storefront', { ...storefront, nodes: storefront.nodes.filter(n => n.name !== 'n3') })
      const instances = [
        instance('storefront', 'n1', 'host-1', { subscriptions: replicating('n1', 'n2', 'n3') }),
        instance('storefront', 'n1', 'host-3', { role: 'replica', node_ready: undefined }),
        instance('storefront', 'n2', 'host-2', { subscriptions: replicating('n2', 'n1', 'n3') }),
        instance('storefront', 'n3', 'host-3', { port: 5433, generation: 1, subscriptions: replicating('n3', 'n1', 'n2') })
      ]
      expect(outcome(withoutN3, instances, ALL, CLOCK)).toEqual({ status: 'running' })
    })
  })

  describe('failed', () => {
    it('an instance failed at the generation, with its error', () => {
      const instances = patched(converged(), 'storefront-n2-9ptayhma', { state: 'failed', error: 'post_database_create: relation "orders" already exists' })
      expect(outcome(db, instances, ALL, CLOCK)).toEqual({ status: 'failed', error: 'instance storefront-n2-9ptayhma: post_database_create: relation "orders" already exists' })
    })

    it('a failure wins over instances still being created; without an error message, "failed"', () => {
      const instances = [
        instance('storefront', 'n1', 'host-1', { state: 'creating', port: undefined }),
        instance('storefront', 'n2', 'host-2', { state: 'failed', port: undefined })
      ]
      expect(outcome(db, instances, ALL, CLOCK)).toEqual({ status: 'failed', error: 'instance storefront-n2-9ptayhma: failed' })
    })

    it('a subscription it needs has been failing for the bound, with the error as the reason', () => {
      const failingSince = '2025-06-01T12:05:00Z'
      const subscriptions = [
        { provider_node: 'n1', name: 'sub_n1_n3', status: 'down', error: 'new row for relation "t" violates check constraint "v_small"', failing_since: failingSince },
        { provider_node: 'n2', name: 'sub_n2_n3', status: 'replicating' }
      ]
      const instances = patched(converged(), 'storefront-n3-ant97dj4', { subscriptions })
      const at = (ms: number): typeof CLOCK => ({ ...CLOCK, now: Date.parse(failingSince) + ms })
      expect(outcome(db, instances, ALL, at(REPLICATION_FAILURE_BOUND_MS - 1000))).toEqual({ status: 'running' })
      expect(outcome(db, instances, ALL, at(REPLICATION_FAILURE_BOUND_MS))).toEqual({
        status: 'failed',
        error: 'instance storefront-n3-ant97dj4: subscription sub_n1_n3 has been down since 2025-06-01T12:05:00Z: new row for relation "t" violates check constraint "v_small"'
      })
      // Even when the instance itself is still on its way to the task's generation.
      expect(outcome(db, patched(instances, 'storefront-n3-ant97dj4', { state: 'modifying', generation: 1 }), ALL, at(REPLICATION_FAILURE_BOUND_MS)).status).toBe('failed')
    })

    it('a task started after the failure began gets the whole bound', () => {
      const subscriptions = [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: 'data stream ended', failing_since: UPDATED_AT }, ...replicating('n2', 'n3')]
      const instances = patched(converged(), 'storefront-n2-9ptayhma', { subscriptions })
      const taskStartedAt = Date.parse(UPDATED_AT) + 300_000
      expect(outcome(db, instances, ALL, { taskStartedAt, now: taskStartedAt + REPLICATION_FAILURE_BOUND_MS - 1 })).toEqual({ status: 'running' })
      expect(outcome(db, instances, ALL, { taskStartedAt, now: taskStartedAt + REPLICATION_FAILURE_BOUND_MS }).status).toBe('failed')
    })

    it('a subscription down without being reported failing (its provider is not available) only waits', () => {
      const subscriptions = [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: 'could not connect to the postgresql server' }, ...replicating('n2', 'n3')]
      expect(outcome(db, patched(converged(), 'storefront-n2-9ptayhma', { subscriptions }), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('a failure time that does not parse never fails a task', () => {
      const subscriptions = [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: 'data stream ended', failing_since: 'yesterday' }, ...replicating('n2', 'n3')]
      expect(outcome(db, patched(converged(), 'storefront-n2-9ptayhma', { subscriptions }), ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('without an error in the server log, says so', () => {
      const subscriptions = [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', failing_since: UPDATED_AT }, ...replicating('n2', 'n3')]
      expect(outcome(db, patched(converged(), 'storefront-n2-9ptayhma', { subscriptions }), ALL, CLOCK)).toEqual({
        status: 'failed', error: 'instance storefront-n2-9ptayhma: subscription sub_n1_n2 has been down since 2025-06-01T12:00:00Z: no error in the server log'
      })
    })

    it('the merged spec is invalid', () => {
      expect(outcome(database('storefront', undefined), converged(), ALL, CLOCK)).toEqual({ status: 'failed', error: 'the merged spec is not valid; update the database to fix it' })
    })
  })

  describe('an update treating a host as gone (remove_host)', () => {
    // host-3 is dead: n3 lived only there, n1's replica too. The user's spec still names it.
    const withoutHost3 = converged().filter(i => i.host_id !== 'host-3')
      .map(i => ({ ...i, subscriptions: i.subscriptions?.filter(s => s.provider_node !== 'n3') }))

    it('does not wait for its instances, nor for subscriptions from a node left only there', () => {
      expect(outcome(db, withoutHost3, new Set(['host-1', 'host-2']), CLOCK)).toEqual({ status: 'running' })
      expect(outcome(db, withoutHost3, new Set(['host-1', 'host-2']), CLOCK, { goneHosts: ['host-3'] })).toEqual({ status: 'completed' })
    })

    it('ignores what the gone host still reports, and still waits for the other hosts', () => {
      const stale = [...withoutHost3, instance('storefront', 'n9', 'host-3')]
      expect(outcome(db, stale, ALL, CLOCK, { goneHosts: ['host-3'] })).toEqual({ status: 'completed' })
      const n2Behind = patched(withoutHost3, instanceId('storefront', 'n2', 'host-2'), { generation: 1 })
      expect(outcome(db, n2Behind, ALL, CLOCK, { goneHosts: ['host-3'] })).toEqual({ status: 'running' })
    })
  })

  describe('delete', () => {
    const deleted = database('storefront', storefront, { generation: 3, deleted: true })

    it('running while any instance of the database is reported', () => {
      expect(outcome(deleted, converged(), ALL, CLOCK)).toEqual({ status: 'running' })
      expect(outcome(deleted, converged().filter(i => i.id === 'storefront-n1-ant97dj4'), ALL, CLOCK)).toEqual({ status: 'running' })
      // Even a failed one: a delete waits until it is gone.
      expect(outcome(deleted, [instance('storefront', 'n2', 'host-2', { state: 'failed', generation: 3 })], ALL, CLOCK)).toEqual({ status: 'running' })
    })

    it('running while a host of the spec is unreachable, even when nothing is reported', () => {
      expect(outcome(deleted, [], new Set(['host-1', 'host-2']), CLOCK)).toEqual({ status: 'running' })
    })

    it('completed when no instance is reported and every host of the spec is reachable', () => {
      expect(outcome(deleted, [], ALL, CLOCK)).toEqual({ status: 'completed' })
      expect(outcome(deleted, [instance('ledger', 'n1', 'host-1')], ALL, CLOCK)).toEqual({ status: 'completed' })
      // Hosts that are not part of the database do not matter.
      const onHost1 = database('sandbox', sandbox, { deleted: true })
      expect(outcome(onHost1, [], new Set(['host-1']), CLOCK)).toEqual({ status: 'completed' })
    })

    it('with force, completes while a host of the spec is unreachable, once the reachable ones report nothing', () => {
      const twoReachable = new Set(['host-1', 'host-2'])
      expect(outcome(deleted, [], twoReachable, CLOCK, { force: true })).toEqual({ status: 'completed' })
      expect(outcome(deleted, [instance('storefront', 'n2', 'host-2')], twoReachable, CLOCK, { force: true })).toEqual({ status: 'running' })
    })

    it('does not wait for a host treated as gone (removed from the cluster meanwhile)', () => {
      expect(outcome(deleted, [], new Set(['host-1', 'host-2']), CLOCK, { goneHosts: ['host-3'] })).toEqual({ status: 'completed' })
    })

    it('a deleted database with an invalid spec completes once nothing is reported', () => {
      const invalid = database('storefront', undefined, { generation: 3, deleted: true })
      expect(outcome(invalid, [], new Set(), CLOCK)).toEqual({ status: 'completed' })
      expect(outcome(invalid, converged(), ALL, CLOCK)).toEqual({ status: 'running' })
    })
  })
})
