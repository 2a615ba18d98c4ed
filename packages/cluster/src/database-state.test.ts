// A database's state as reads derive it from the stored state and what the hosts report, when replication fails.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { instanceId } from '@pgmesh/model'
import { ClusterState, SCALAR_STRINGS_FORMAT } from '@pgmesh/state'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Databases } from './databases.js'
import type { ObservedInstance, ObservedSubscription } from '@pgmesh/model'
import type { ObservedSnapshot } from './observed-cluster.js'
import { TaskLogStore } from './task-log.js'
import { Tasks } from './tasks.js'
import { DataKey } from './data-key.js'

/** One cluster's data key for every replica here. */
const DATA_KEY = DataKey.generate()

const CHECK = 'new row for relation "t" violates check constraint "v_small"'
const N2 = instanceId('db', 'n2', 'host-2')

let dir: string
let state: ClusterState
let databases: Databases
let observed: ObservedSnapshot

/** Both primaries up; n2's subscription from n1 as given. */
function report (fromN1: Partial<ObservedSubscription> = {}): void {
  const primary = (node: string, host: string, provider: string, sub: Partial<ObservedSubscription>): ObservedInstance => ({
    id: instanceId('db', node, host), database_id: 'db', node_name: node, host_id: host, state: 'available', role: 'primary', port: 5432,
    generation: 2, updated_at: '2026-11-30T05:00:00Z', subscriptions: [{ provider_node: provider, name: `sub_${provider}_${node}`, status: 'replicating', ...sub }]
  })
  const instances = [primary('n1', 'host-1', 'n2', {}), primary('n2', 'host-2', 'n1', fromN1)]
  observed = { version: observed.version + 1, instances, byId: new Map(instances.map(i => [i.id, i])) }
}

const n2 = (): Record<string, unknown> | undefined => databases.get('db').instances.find(i => i.id === N2)

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgmesh-database-state-'))
  state = await ClusterState.open({ dir: join(dir, 'state'), hostId: 'host-1', logger: pino({ level: 'silent' }) })
  const tasks = new Tasks('host-1', state, new TaskLogStore(join(dir, 'tasks'), 'host-1'), async () => [])
  observed = { version: 0, instances: [], byId: new Map() }
  databases = new Databases({ hostId: 'host-1', state, tasks, knownHostIds: () => new Set(['host-1', 'host-2']), observed: () => observed, defaultPostgresVersion: '15.20', dataKey: () => DATA_KEY })
  await state.initialize('c1')
  await state.change({ op: 'test.hosts' }, d => { d.hosts = { 'host-1': { id: 'host-1', document_format: SCALAR_STRINGS_FORMAT }, 'host-2': { id: 'host-2', document_format: SCALAR_STRINGS_FORMAT } } as never })
  const created = await databases.create({ id: 'db', spec: { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }] } })
  await databases.settle('db', created.task.task_id, { status: 'completed' })
  report()
})

afterEach(async () => {
  await state.close()
  await rm(dir, { recursive: true, force: true })
})

describe('subscription lag', () => {
  it("puts the provider's measure of each slot on the subscriber's subscription, and none while the provider says nothing", () => {
    expect(n2()).toMatchObject({ spock: { subscriptions: [{ name: 'sub_n1_n2' }] } })
    expect((n2() as { spock: { subscriptions: object[] } }).spock.subscriptions[0]).not.toHaveProperty('lag_bytes')
    const n1 = observed.instances.find(i => i.node_name === 'n1') as ObservedInstance
    const withLag = { ...n1, subscriber_lag: [{ subscriber_node: 'n2', lag_bytes: 4096 }] }
    const instances = [withLag, ...observed.instances.filter(i => i !== n1)]
    observed = { version: observed.version + 1, instances, byId: new Map(instances.map(i => [i.id, i])) }
    expect(n2()).toMatchObject({ spock: { subscriptions: [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'replicating', lag_bytes: 4096 }] } })
    // n1's own subscription (from n2) has no measure from n2.
    const n1Read = databases.get('db').instances.find(i => i.node_name === 'n1') as { spock: { subscriptions: object[] } }
    expect(n1Read.spock.subscriptions[0]).not.toHaveProperty('lag_bytes')
  })
})

describe('a failing subscription', () => {
  it('makes its instance degraded, with the error on the subscription and the instance, and the available database degraded', () => {
    expect(databases.get('db').state).toBe('available')
    report({ status: 'down', error: CHECK, failing_since: '2026-11-30T05:01:00Z' })
    expect(n2()).toMatchObject({
      state: 'degraded',
      error: `subscription sub_n1_n2: ${CHECK}`,
      spock: { subscriptions: [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: CHECK, failing_since: '2026-11-30T05:01:00Z' }] }
    })
    expect(databases.get('db').state).toBe('degraded')
  })

  it('stalled without a known error, is degraded too; down, even with an error, but not (yet) failing is not', () => {
    report({ status: 'down' })
    expect(n2()?.state).toBe('available')
    report({ status: 'down', error: 'data stream ended' })
    expect(n2()?.state).toBe('available')
    expect(n2()).not.toHaveProperty('error')
    expect(databases.get('db').state).toBe('available')
    report({ status: 'down', failing_since: '2026-11-30T05:01:00Z' })
    expect(n2()).toMatchObject({ state: 'degraded', error: 'subscription sub_n1_n2: down' })
  })

  it('leaves a database whose task failed failed, until the reconciler reports the spec reached after all', async () => {
    const spec = databases.get('db').spec
    const update = await databases.update('db', { spec: { ...spec, postgresql_conf: { work_mem: '8MB' } } })
    report({ status: 'down', error: CHECK, failing_since: '2026-11-30T05:01:00Z' })
    expect(databases.get('db').state).toBe('modifying')
    await databases.settle('db', update.task.task_id, { status: 'failed', error: `subscription sub_n1_n2: ${CHECK}` })
    expect(databases.get('db').state).toBe('failed')
    report()
    expect(databases.get('db').state).toBe('failed')
    expect(await databases.recover('db', update.task.task_id)).toBe(true)
    expect(databases.get('db').state).toBe('available')
    // Once: a second call changes nothing, and neither does one for a task that is not the database's current one.
    const before = storedDatabases()
    expect(await databases.recover('db', update.task.task_id)).toBe(false)
    expect(await databases.recover('db', 'another-task')).toBe(false)
    expect(storedDatabases()).toEqual(before)
  })
})

function storedDatabases (): string {
  return JSON.stringify(state.doc.databases)
}
