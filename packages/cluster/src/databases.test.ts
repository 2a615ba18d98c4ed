// Conflicts and the view cache, on two real document replicas that edit apart and then merge.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { instanceId } from '@pgmesh/model'
import { ClusterState, SCALAR_STRINGS_FORMAT, toPlain } from '@pgmesh/state'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Databases } from './databases.js'
import { TaskLogStore } from './task-log.js'
import { Tasks } from './tasks.js'
import { NOTHING_OBSERVED } from './observed-cluster.js'
import { DataKey } from './data-key.js'

/** One cluster's data key for every replica here. */
const DATA_KEY = DataKey.generate()

const logger = pino({ level: 'silent' })

interface Replica { hostId: string, state: ClusterState, databases: Databases }

let dir: string
let a: Replica
let b: Replica

async function open (hostId: string): Promise<Replica> {
  const state = await ClusterState.open({ dir: join(dir, hostId, 'state'), hostId, logger })
  const tasks = new Tasks(hostId, state, new TaskLogStore(join(dir, hostId, 'tasks'), hostId), async () => [])
  const databases = new Databases({ hostId, state, tasks, knownHostIds: () => new Set(Object.keys(state.doc.hosts ?? {})), observed: () => NOTHING_OBSERVED, defaultPostgresVersion: '15.18', dataKey: () => DATA_KEY })
  return { hostId, state, databases }
}

function merge (from: Replica, to: Replica): void {
  const bytes = A.save(from.state.automergeDoc)
  to.state.applyRemote(from.hostId, doc => [A.merge(doc, A.load(bytes)), undefined])
}

function spec (apiKey: string, workMem: string): Record<string, unknown> {
  return {
    database_name: 'app',
    postgresql_conf: { work_mem: workMem },
    nodes: [{ name: 'n1', host_ids: ['host-1'] }],
    database_users: [{ username: 'app', password: 'pw-app' }],
    services: [{
      service_id: 'mcp', service_type: 'mcp', version: '1.0.0', host_ids: ['host-1'], connect_as: 'app',
      config: { llm_provider: 'anthropic', anthropic_api_key: apiKey, nested: [{ access_token: `${apiKey}-nested`, model: 'x' }] }
    }]
  }
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgmesh-databases-'))
  a = await open('host-1')
  b = await open('host-2')
  await a.state.initialize('c1')
  await a.state.change({ op: 'test.hosts' }, d => { d.hosts = { 'host-1': { id: 'host-1', document_format: SCALAR_STRINGS_FORMAT }, 'host-2': { id: 'host-2', document_format: SCALAR_STRINGS_FORMAT } } as never })
  await a.databases.create({ id: 'db', spec: spec('sk-base', '4MB') })
  merge(a, b)
})

afterEach(async () => {
  await a.state.close()
  await b.state.close()
  await rm(dir, { recursive: true, force: true })
})

describe('conflicts', () => {
  it('never show a service config secret, as a leaf or inside a conflicting subtree', async () => {
    await a.databases.update('db', { spec: spec('sk-from-a', '8MB') })
    await b.databases.update('db', { spec: spec('sk-from-b', '16MB') })
    // Cached before the merge on both sides: the merge must invalidate the views even where the value in effect
    // stays the same and only a conflict appears.
    expect(a.databases.get('db').conflicts).toBeUndefined()
    expect(b.databases.get('db').conflicts).toBeUndefined()
    merge(a, b)
    merge(b, a)
    expect(b.databases.get('db').conflicts?.length).toBe(a.databases.get('db').conflicts?.length)
    const view = a.databases.get('db')
    const paths = (view.conflicts ?? []).map(c => c.path)
    expect(paths).toContain('spec.services[mcp].config.anthropic_api_key')
    expect(paths).toContain('spec.postgresql_conf.work_mem')
    const key = view.conflicts?.find(c => c.path === 'spec.services[mcp].config.anthropic_api_key')
    expect(key?.values).toEqual(['(secret)', '(secret)'])
    // The nested list is one value: both sides' copies conflict as a whole, with their token masked.
    const nested = view.conflicts?.find(c => c.path === 'spec.services[mcp].config.nested')
    expect(nested?.values).toHaveLength(2)
    expect(JSON.stringify(view)).not.toMatch(/sk-(base|from-a|from-b)/)
    expect(JSON.stringify(b.databases.get('db'))).not.toMatch(/sk-(base|from-a|from-b)/)
  })

  it('leave out fields both sides set to the same value', async () => {
    await a.databases.update('db', { spec: spec('sk-same', '8MB') })
    await b.databases.update('db', { spec: spec('sk-same', '8MB') })
    merge(a, b)
    merge(b, a)
    expect(a.databases.get('db').conflicts).toBeUndefined()
    expect(b.databases.get('db').conflicts).toBeUndefined()
  })
})

describe('conflicts after the first reads', () => {
  it('go once an update settles them, and a database created on two hosts while apart shows both creates', async () => {
    expect(a.databases.list().databases.map(d => d.conflicts)).toEqual([undefined])
    await a.databases.update('db', { spec: spec('sk-base', '8MB') })
    await b.databases.update('db', { spec: spec('sk-base', '16MB') })
    merge(b, a)
    expect(a.databases.get('db').conflicts?.map(c => c.path)).toEqual(['spec.postgresql_conf.work_mem'])
    await a.databases.update('db', { spec: spec('sk-base', '32MB') })
    merge(a, b)
    for (const replica of [a, b]) {
      const view = replica.databases.get('db')
      expect(view.conflicts).toBeUndefined()
      expect((view.spec.postgresql_conf as Record<string, unknown>).work_mem).toBe('32MB')
    }

    await a.databases.create({ id: 'twice', spec: spec('sk-a', '8MB') })
    await b.databases.create({ id: 'twice', spec: spec('sk-b', '8MB') })
    merge(b, a)
    expect(a.databases.get('twice').conflicts?.length).toBeGreaterThan(0)
    expect(a.databases.get('db').conflicts).toBeUndefined()
  })
})

describe('views after changes', () => {
  it('follow local writes, merged remote writes and the set of known hosts', async () => {
    const before = a.databases.get('db')
    expect(a.databases.get('db').spec).toBe(before.spec)

    await b.databases.update('db', { spec: spec('sk-base', '32MB') })
    merge(b, a)
    expect((a.databases.get('db').spec.postgresql_conf as Record<string, unknown>).work_mem).toBe('32MB')

    // A spec naming a host that leaves the cluster fails validation on the next read, without any database write.
    await b.state.change({ op: 'test.hosts' }, d => { delete d.hosts['host-1'] })
    merge(b, a)
    const failed = a.databases.get('db')
    expect(failed.state).toBe('failed')
    expect(failed.spec_errors?.join('\n')).toMatch(/host-1/)
    expect(a.databases.desired().find(d => d.id === 'db')?.spec).toBeUndefined()
  })
})

describe('ports', () => {
  it('refuse at create and update a fixed port another database uses on the same address; what is refused is not written', async () => {
    await a.state.change({ op: 'test.addresses' }, d => {
      const hosts = d.hosts as Record<string, { client_addresses?: string[] }>
      for (const host of Object.values(hosts)) host.client_addresses = ['127.0.0.1']
    })
    const fixed = (port: number, hostIds: string[]): Record<string, unknown> => ({
      database_name: 'other', port, nodes: [{ name: 'n1', host_ids: hostIds }], database_users: [{ username: 'app', password: 'pw-app' }]
    })
    await a.databases.create({ id: 'example', spec: fixed(6432, ['host-1']) })
    const refused = a.databases.create({ id: 'copy', spec: fixed(6432, ['host-2']) })
    await expect(refused).rejects.toMatchObject({
      name: 'invalid_input',
      message: 'port: port 6432 on host host-2 is already used by node n1 of database example on host host-1: both hosts listen on 127.0.0.1'
    })
    expect(a.databases.list().databases.map(d => d.id)).not.toContain('copy')
    // Its own port is no conflict when the database itself is updated; another free one is taken.
    await a.databases.update('example', { spec: { ...fixed(6432, ['host-1']), postgresql_conf: { work_mem: '8MB' } } })
    await a.databases.create({ id: 'copy', spec: fixed(6442, ['host-2']) })
    await expect(a.databases.update('copy', { spec: fixed(6432, ['host-1']) })).rejects.toMatchObject({
      message: 'port: port 6432 on host host-1 is already used by node n1 of database example'
    })
    expect(a.databases.get('copy').spec.port).toBe(6442)
  })
})

describe('a database created again under a deleted one\'s id', () => {
  it('starts each node that had primary terms above them, with its first host\'s instance', async () => {
    const twoHosts = { database_name: 'ha', nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-2'] }] }
    await a.databases.create({ id: 'ha', spec: twoHosts })
    // Two switchovers of n1 (there and back) recorded their terms.
    await a.state.change({ op: 'test.terms' }, d => {
      const record = d.databases.ha as { primaries?: Record<string, Record<string, string>> }
      record.primaries = { n1: { 1: instanceId('ha', 'n1', 'host-2'), 2: instanceId('ha', 'n1', 'host-1') } }
    })
    await a.databases.delete('ha')
    await a.databases.create({ id: 'ha', spec: { ...twoHosts, nodes: [{ name: 'n1', host_ids: ['host-2', 'host-1'] }, { name: 'n2', host_ids: ['host-2'] }] } })
    expect(toPlain(a.state.doc.databases?.ha?.primaries)).toEqual({ n1: { 3: instanceId('ha', 'n1', 'host-2') } })
    // A first create, and a node without terms, start at term 0 as ever.
    expect(a.state.doc.databases?.db?.primaries).toBeUndefined()
  })
})
