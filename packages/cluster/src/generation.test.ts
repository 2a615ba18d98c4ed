// The cluster's records across a document generation: every task still listed, views rebuilt, and an update a host
// made while offline for a month carried into the generation the others compacted to.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { ClusterState, logicalView, SCALAR_STRINGS_FORMAT } from '@pgmesh/state'
import pino from 'pino'
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import { ClusterDocument } from './cluster-document.js'
import { DataKey } from './data-key.js'
import { NOTHING_OBSERVED } from './observed-cluster.js'
import { TaskArchive } from './task-archive.js'

const DATA_KEY = DataKey.generate()
const logger = pino({ level: 'silent' })
const HOSTS = ['host-1', 'host-2']
let dir: string

interface Replica { state: ClusterState, cluster: ClusterDocument }

async function open (hostId: string): Promise<Replica> {
  const state = await ClusterState.open({ dir: join(dir, hostId, 'state'), hostId, logger })
  const cluster = new ClusterDocument({
    hostId, state, taskLogDir: join(dir, hostId, 'tasks'), remoteTaskLogs: async () => [], observed: () => NOTHING_OBSERVED,
    reachableHosts: () => new Set(HOSTS), defaultPostgresVersion: '15.18', dataKey: () => DATA_KEY
  })
  return { state, cluster }
}

function pull (to: Replica, from: Replica): void {
  const bytes = A.save(from.state.automergeDoc)
  to.state.applyRemote('peer', doc => [A.merge(doc, A.load(bytes)), undefined])
}

const spec = (workMem: string): Record<string, unknown> => ({
  database_name: 'app', postgresql_conf: { work_mem: workMem }, nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }]
})

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pgmesh-cluster-generation-')) })
afterEach(async () => {
  vi.useRealTimers()
  await rm(dir, { recursive: true, force: true })
})

it('keeps every task and database across a generation, and merges an update made offline for a month', async () => {
  const a = await open('host-1')
  const b = await open('host-2')
  await a.state.initialize('c1')
  await a.state.change({ op: 'test.hosts' }, d => { for (const h of HOSTS) d.hosts[h] = { id: h, document_format: SCALAR_STRINGS_FORMAT } as never })
  for (const id of ['db1', 'db2']) {
    const { task } = await a.cluster.databases.create({ id, spec: spec('4MB') })
    await a.cluster.databases.settle(id, task.task_id, { status: 'completed' })
  }
  pull(b, a)
  // Both hold the frontier; b goes offline and updates db2; a updates db1 and compacts.
  const frontier = a.state.heads()
  const offline = await b.cluster.databases.update('db2', { spec: spec('64MB') })
  await b.cluster.databases.settle('db2', offline.task.task_id, { status: 'completed' })
  const before = a.cluster.databases.get('db1') // cached at the old generation's heads
  expect(before?.spec.postgresql_conf).toEqual({ work_mem: '4MB' })
  const online = await a.cluster.databases.update('db1', { spec: spec('8MB') })
  const tasksBefore = a.cluster.tasks.list({ sortOrder: 'asc' })
  await a.cluster.enterGeneration(ClusterDocument.startGeneration(a.state.automergeDoc, frontier))
  await a.cluster.databases.settle('db1', online.task.task_id, { status: 'completed' })

  // The task list is the same, views are rebuilt from the new generation, and history starts at it.
  expect(a.cluster.tasks.list({ sortOrder: 'asc' }).map(t => t.task_id)).toEqual(tasksBefore.map(t => t.task_id))
  expect(a.cluster.databases.get('db1')?.spec.postgresql_conf).toEqual({ work_mem: '8MB' })
  expect(a.cluster.tasks.get(online.task.task_id)?.status).toBe('completed')

  // b comes back a month later: its update and task are replayed onto a's generation, and both converge.
  expect(await b.cluster.enterGeneration(a.state.automergeDoc)).toBe(2)
  pull(a, b)
  pull(b, a)
  for (const r of [a, b]) {
    expect(r.cluster.databases.get('db2')?.spec.postgresql_conf).toEqual({ work_mem: '64MB' })
    expect(r.cluster.databases.get('db1')?.spec.postgresql_conf).toEqual({ work_mem: '8MB' })
    expect(r.cluster.tasks.get(offline.task.task_id)?.status).toBe('completed')
    expect(r.cluster.tasks.list({}).length).toBe(tasksBefore.length + 1)
  }
  await a.state.close()
  await b.state.close()
})

it('moves tasks finished more than 30 days before the frontier to every host\'s archive, and still lists and gets them', async () => {
  vi.useFakeTimers({ toFake: ['Date'] })
  vi.setSystemTime(Date.parse('2026-01-01T00:00:00Z'))
  const a = await open('host-1')
  const b = await open('host-2')
  await a.state.initialize('c1')
  await a.state.change({ op: 'test.hosts' }, d => { for (const h of HOSTS) d.hosts[h] = { id: h, document_format: SCALAR_STRINGS_FORMAT } as never })
  const created = await a.cluster.databases.create({ id: 'db1', spec: spec('4MB') })
  await a.cluster.databases.settle('db1', created.task.task_id, { status: 'completed' })
  const old = await a.cluster.databases.update('db1', { spec: spec('8MB') })
  await a.cluster.databases.settle('db1', old.task.task_id, { status: 'completed' })
  const openOld = await a.cluster.databases.create({ id: 'db2', spec: spec('4MB') }) // still running when compacted
  vi.setSystemTime(Date.parse('2026-03-01T00:00:00Z'))
  const recent = await a.cluster.databases.update('db1', { spec: spec('16MB') })
  await a.cluster.databases.settle('db1', recent.task.task_id, { status: 'completed' })
  pull(b, a)
  const listed = a.cluster.tasks.list({})

  const next = ClusterDocument.startGeneration(a.state.automergeDoc, a.state.heads())
  expect(A.getHeads(ClusterDocument.startGeneration(b.state.automergeDoc, b.state.heads()))).toEqual(A.getHeads(next))
  // The two old finished tasks left the document; the open one, the recent one (db1's current task) stayed.
  expect(Object.keys(logicalView(next).tasks ?? {}).sort()).toEqual([openOld.task.task_id, recent.task.task_id].sort())
  await a.cluster.enterGeneration(next)
  await b.cluster.enterGeneration(next)
  for (const r of [a, b]) {
    expect(r.cluster.tasks.list({})).toEqual(listed)
    expect(r.cluster.tasks.get(old.task.task_id)).toEqual(listed.find(t => t.task_id === old.task.task_id))
    expect(r.cluster.taskArchive.size).toBe(2)
  }
  // The archive is on disk: a fresh reader of the file sees it.
  expect(new TaskArchive(join(dir, 'host-2', 'tasks', 'archived-tasks.jsonl')).get(created.task.task_id)?.status).toBe('completed')
  await a.state.close()
  await b.state.close()
})
