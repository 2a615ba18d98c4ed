import type { DesiredDatabaseRecord } from '@pgmesh/cluster'
import { type BackupRequest, type DatabaseSpec, instanceId } from '@pgmesh/model'
import type { InstanceStatus } from '@pgmesh/orchestrator'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { BackupRunner } from './backups.js'
import type { ReconcilerHost } from './deps.js'

// Who runs a node's backups and schedules, with fakes of the host's parts: the document (primaries, ticks, requests),
// the lease the HA loop holds, and an orchestrator whose backups end when the test says.

const logger = pino({ level: 'silent' })
const MINUTE = 60_000
const T0 = Date.parse('2026-03-10T12:00:30Z')

const spec: DatabaseSpec = {
  database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }],
  backup_config: { repositories: [{ type: 'posix', base_path: '/b' }], schedules: [{ id: 'minutely', type: 'incr', cron_expression: '* * * * *' }] }
}

/** One cluster document shared by two hosts' runners (as if it had converged). */
function cluster () {
  const record: DesiredDatabaseRecord = { id: 'db1', generation: 1, deleted: false, task_id: 't0', spec, sources: {}, primaries: {}, instanceOperations: {}, primaryChanges: {} }
  const ticks: Record<string, string> = {}
  const requests = new Map<string, BackupRequest>()
  const tasks = new Map<string, { status: string, host_id?: string }>([['t0', { status: 'completed' }]])
  const ran: Array<{ host: string, taskId: string, type: string }> = []
  let next = 0
  const backups: NonNullable<ReconcilerHost['backups']> = {
    requests: () => [...requests.values()],
    tick: async (_db, node, schedule, at, type) => {
      ticks[`${node}/${schedule}`] = at
      if (type === undefined) return undefined
      const taskId = `t${++next}`
      tasks.set(taskId, { status: 'pending' })
      requests.set(taskId, { task_id: taskId, node_name: node, type, schedule_id: schedule })
      return { task_id: taskId } as never
    },
    started: async (_db, taskId, hostId) => {
      tasks.set(taskId, { status: 'running', host_id: hostId })
      const r = requests.get(taskId)
      if (r !== undefined) r.host_id = hostId
      return true
    },
    finished: async (_db, taskId, error, canceled) => {
      tasks.set(taskId, { ...tasks.get(taskId), status: canceled === true ? 'canceled' : error === undefined ? 'completed' : 'failed' })
      requests.delete(taskId)
    }
  }
  const host = (hostId: string): ReconcilerHost => ({
    hostId,
    dataDir: '/nowhere',
    document: { doc: { hosts: {}, databases: { db1: { backup_ticks: ticks } } } as never, on: (() => {}) as never },
    databases: { desired: () => [record], generations: () => new Map(), settle: async () => {}, recover: async () => false },
    tasks: { get: (id: string) => tasks.get(id) as never, log: async () => {}, settle: async () => {}, settleParents: async () => {} },
    operations: { recordPrimary: async () => {} },
    backups,
    runtime: { initialized: true } as never,
    health: {} as never,
    metrics: {} as never
  })
  const runner = (hostId: string, opts: { held: () => string[], now: () => number, role?: 'primary' | 'replica', backup?: (signal?: AbortSignal) => Promise<void> }): BackupRunner => {
    const id = instanceId('db1', 'n1', hostId)
    const status: InstanceStatus = { instanceId: id, state: 'running', role: opts.role ?? 'primary', port: 1, postgresVersion: '15', admin: { host: '/tmp', port: 1, user: 'pgmesh' } }
    return new BackupRunner({
      host: host(hostId), held: opts.held, now: opts.now, logger, local: i => i === id ? status : undefined, taskLog: async () => {},
      orchestrator: {
        backup: async (_i, run, _onLine, signal) => {
          ran.push({ host: hostId, taskId: [...requests.values()].find(r => r.host_id === hostId)?.task_id ?? '?', type: run.type })
          await opts.backup?.(signal)
        }
      }
    })
  }
  return { record, ticks, requests, tasks, ran, runner }
}

describe('the backup runner', () => {
  it('runs schedules on the primary\'s host while it holds the lease, one backup per tick, and a missed tick once', async () => {
    const c = cluster()
    let now = T0
    const h1 = c.runner('host-1', { held: () => [instanceId('db1', 'n1', 'host-1')], now: () => now })
    const h2 = c.runner('host-2', { held: () => [], now: () => now, role: 'replica' })
    const settle = async (): Promise<void> => { for (const r of [h1, h2]) await r.pass(); await h1.stop(); await h2.stop() }

    // First seen: its latest tick is recorded, not owed.
    await settle()
    expect(c.ticks['n1/minutely']).toBe('2026-03-10T12:00:00.000Z')
    expect(c.ran).toEqual([])

    now = T0 + MINUTE
    await settle()
    await settle()
    expect(c.ran).toEqual([{ host: 'host-1', taskId: 't1', type: 'incr' }])
    expect(c.ticks['n1/minutely']).toBe('2026-03-10T12:01:00.000Z')

    // Three ticks went by unseen (the daemon was down, say): one backup for them, at the latest.
    now = T0 + 4 * MINUTE
    await settle()
    await settle()
    expect(c.ran).toEqual([{ host: 'host-1', taskId: 't1', type: 'incr' }, { host: 'host-1', taskId: 't2', type: 'incr' }])
    expect(c.ticks['n1/minutely']).toBe('2026-03-10T12:04:00.000Z')
  })

  it('leaves a node to the new primary after a failover, which takes the missed ticks once', async () => {
    const c = cluster()
    let now = T0
    let h2Holds = false
    const h1 = c.runner('host-1', { held: () => [], now: () => now })
    const h2 = c.runner('host-2', { held: () => h2Holds ? [instanceId('db1', 'n1', 'host-2')] : [], now: () => now })
    const settle = async (): Promise<void> => { for (const r of [h1, h2]) await r.pass(); await h1.stop(); await h2.stop() }
    c.ticks['n1/minutely'] = '2026-03-10T12:00:00.000Z'

    // host-1 lost the lease (fenced), the failover is under way: nobody runs the tick.
    now = T0 + MINUTE
    await settle()
    expect(c.ran).toEqual([])

    // The document names host-2's instance (term 1), but it does not hold the lease yet: still nobody.
    c.record.primaries = { n1: { 1: instanceId('db1', 'n1', 'host-2') } }
    now = T0 + 3 * MINUTE
    await settle()
    expect(c.ran).toEqual([])

    // It holds the lease: the three missed ticks make one backup, at the latest tick.
    h2Holds = true
    await settle()
    await settle()
    expect(c.ran).toEqual([{ host: 'host-2', taskId: 't1', type: 'incr' }])
    expect(c.ticks['n1/minutely']).toBe('2026-03-10T12:03:00.000Z')
  })

  it('starts requested backups on the primary\'s host only, one at a time per node', async () => {
    const c = cluster()
    c.record.spec = { ...spec, backup_config: { repositories: spec.backup_config?.repositories ?? [] } }
    const h1 = c.runner('host-1', { held: () => [instanceId('db1', 'n1', 'host-1')], now: () => T0 })
    const h2 = c.runner('host-2', { held: () => [], now: () => T0, role: 'replica' })
    for (const id of ['a', 'b']) {
      c.tasks.set(id, { status: 'pending' })
      c.requests.set(id, { task_id: id, node_name: 'n1', type: 'full' })
    }
    await h2.pass()
    await h2.stop()
    expect(c.ran).toEqual([])
    await h1.pass()
    await h1.stop()
    expect(c.ran.map(r => r.host)).toEqual(['host-1'])
    await h1.pass()
    await h1.stop()
    expect(c.ran.map(r => `${r.host} ${r.taskId}`)).toEqual(['host-1 a', 'host-1 b'])
    expect([c.tasks.get('a')?.status, c.tasks.get('b')?.status, c.requests.size]).toEqual(['completed', 'completed', 0])
  })

  it('cancels a backup: one not started never starts, a running one is stopped', async () => {
    const c = cluster()
    c.record.spec = { ...spec, backup_config: { repositories: spec.backup_config?.repositories ?? [] } }
    let stopped = false
    const h1 = c.runner('host-1', {
      held: () => [instanceId('db1', 'n1', 'host-1')], now: () => T0,
      backup: async (signal) => {
        await new Promise<void>((resolve, reject) => { signal?.addEventListener('abort', () => { stopped = true; reject(new Error('canceled')) }) })
      }
    })
    c.tasks.set('a', { status: 'canceling' })
    c.requests.set('a', { task_id: 'a', node_name: 'n1', type: 'full' })
    await h1.pass()
    expect([c.tasks.get('a')?.status, c.ran]).toEqual(['canceled', []])

    c.tasks.set('b', { status: 'pending' })
    c.requests.set('b', { task_id: 'b', node_name: 'n1', type: 'full' })
    await h1.pass()
    await new Promise(resolve => setImmediate(resolve))
    expect(c.tasks.get('b')?.status).toBe('running')
    c.tasks.set('b', { ...c.tasks.get('b'), status: 'canceling' })
    await h1.pass()
    await h1.stop()
    expect([stopped, c.tasks.get('b')?.status, c.requests.size]).toEqual([true, 'canceled', 0])
  })
})
