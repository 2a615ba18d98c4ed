import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { DesiredDatabaseRecord } from '@pgmesh/cluster'
import { type DatabaseSpec, instanceId, type InstanceSpec, type ObservedInstance, TerminalError } from '@pgmesh/model'
import type { InstanceStatus, Orchestrator } from '@pgmesh/orchestrator'
import type { ReplicationDriver, SubscriberLag, SubscriptionStatus } from '@pgmesh/replication'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { ReconcilerHost } from './deps.js'
import type { InstanceAdmin } from './instance-admin.js'
import { Reconciler } from './reconciler.js'

// In-process tests of the loop and its parts, with fakes of the narrow components the reconciler takes: a host
// (document, tasks, health), an orchestrator that keeps instances in memory and an InstanceAdmin with no server.

const logger = pino({ level: 'silent' })
const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

const spec = (version = '16'): DatabaseSpec => ({
  database_name: 'app', postgres_version: version, port: 0, nodes: [{ name: 'n1', host_ids: ['host-1'] }],
  database_users: [{ username: 'app', password: 'secret-password', db_owner: true, attributes: ['LOGIN'] }]
})
const ID = instanceId('db1', 'n1', 'host-1')

interface FakeTask { task_id: string, status: string, origin_host: string, created_at: string, type: string, log: string[] }

function fakeHost (dataDir: string) {
  const db: DesiredDatabaseRecord = { id: 'db1', generation: 1, deleted: false, task_id: 't1', spec: spec(), sources: {}, primaries: {}, instanceOperations: {}, primaryChanges: {} }
  const tasks = new Map<string, FakeTask>([['t1', { task_id: 't1', status: 'pending', origin_host: 'host-1', created_at: new Date().toISOString(), type: 'create', log: [] }]])
  const settled: Array<{ status: string, error?: string }> = []
  const cluster: ObservedInstance[] = []
  let reconciler: Reconciler | undefined
  const metrics = { down: -1, errors: 0 }
  const host: ReconcilerHost = {
    hostId: 'host-1',
    dataDir,
    document: { doc: { hosts: { 'host-1': { id: 'host-1', client_addresses: ['127.0.0.1'] } } } as never, on: (() => {}) as never },
    databases: {
      desired: () => [db],
      generations: () => new Map([['db1', { generation: db.generation, databaseName: 'app' }]]),
      settle: async (_id, taskId, result) => {
        settled.push(result)
        const t = tasks.get(taskId)
        if (t !== undefined) t.status = result.status
      },
      recover: async () => false
    },
    tasks: {
      get: (id: string) => tasks.get(id) as never,
      log: async (id: string, message: string) => { tasks.get(id)?.log.push(message) },
      settle: async () => {},
      settleParents: async () => {}
    },
    operations: { recordPrimary: async () => {} },
    runtime: { initialized: true, leases: undefined, on: () => host.runtime, beat: () => {
        // A heartbeat: this host's reports reach the cluster view, and (as a peer's heartbeat would) ask for a pass.
        cluster.splice(0, cluster.length, ...cluster.filter(i => i.host_id !== 'host-1'), ...(reconciler?.observedInstances() ?? []))
        setImmediate(() => { reconciler?.requeue() })
      }
    } as never,
    health: { clusterInstances: () => cluster, reachableHosts: () => new Set(['host-1']) as never, lastHeardFrom: () => Date.now() },
    metrics: { subscriptionsDown: { set: (n: number) => { metrics.down = n } }, subscriptionApplyErrors: { inc: (n = 1) => { metrics.errors += n } } } as never
  }
  return { host, db, tasks, settled, cluster, metrics, attach: (r: Reconciler) => { reconciler = r } }
}

function fakeOrchestrator () {
  const instances = new Map<string, InstanceStatus>()
  const calls: string[] = []
  const times: number[] = []
  let failEnsure: ((spec: InstanceSpec) => Error | undefined) | undefined
  const orchestrator: Orchestrator = {
    ensureInstance: async (s) => {
      calls.push(`ensure ${s.instanceId}`)
      times.push(Date.now())
      const err = failEnsure?.(s)
      if (err !== undefined) throw err
      const status: InstanceStatus = { instanceId: s.instanceId, state: 'running', role: 'primary', port: 5500, postgresVersion: '16.4', admin: { host: '/tmp', port: 5500, user: 'pgmesh' } }
      instances.set(s.instanceId, status)
      return status
    },
    startInstance: async (id) => { calls.push(`start ${id}`); return instances.get(id) as InstanceStatus },
    stopInstance: async (id) => { calls.push(`stop ${id}`); return instances.get(id) as InstanceStatus },
    restartInstance: async (id) => { calls.push(`restart ${id}`); times.push(Date.now()); return instances.get(id) as InstanceStatus },
    promote: async (id) => instances.get(id) as InstanceStatus,
    removeInstance: async (id) => { instances.delete(id) },
    status: async (id) => instances.get(id),
    list: async () => [...instances.values()],
    onEvent: () => () => {},
    close: async () => {}
  }
  return { orchestrator, instances, calls, times, failWith: (f: typeof failEnsure) => { failEnsure = f } }
}

function fakeAdmin (subscriptions: () => SubscriptionStatus[] = () => [], lag: () => SubscriberLag[] = () => []) {
  const calls: string[] = []
  let membershipError: Error | undefined
  const driver = {
    kind: 'pglogical',
    ensureMembership: async (_c: unknown, m: { node: { nodeName: string } }) => {
      calls.push(`membership ${m.node.nodeName}${membershipError === undefined ? '' : ' failed'}`)
      if (membershipError !== undefined) throw membershipError
    },
    subscriptionStatus: async () => subscriptions(),
    subscriberLag: async () => lag(),
    restartSubscription: async (_c: unknown, name: string) => { calls.push(`restart ${name}`) },
    unreplicatedDdl: async () => undefined,
    applyWorkers: async () => new Map()
  } as unknown as ReplicationDriver
  const admin: InstanceAdmin = {
    replicationOf: async () => ({ kind: 'pglogical', driver }),
    withSession: async (_id, _db, work) => await work({ query: async () => ({ rows: [] }) as never }),
    setReadOnly: async (id, on) => { calls.push(`read-only ${id} ${String(on)}`) },
    synchronousNow: async () => [],
    drainToPeers: async () => '0/0',
    waitReplayed: async () => {},
    createPromotedSlots: async () => {},
    connectPeer: async () => { throw new Error('no peers here') }
  }
  return { admin, calls, failMembership: (err: Error | undefined) => { membershipError = err } }
}

async function setup (options: { subscriptions?: () => SubscriptionStatus[], lag?: () => SubscriberLag[] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'pgmesh-rec-'))
  dirs.push(dir)
  const h = fakeHost(dir)
  const o = fakeOrchestrator()
  const a = fakeAdmin(options.subscriptions, options.lag)
  const reconciler = new Reconciler(h.host, o.orchestrator, {
    logger, resyncMs: 60_000, subscriptionPollMs: 60_000, admin: a.admin, highAvailability: false, newLogTail: () => ({ read: async () => [] })
  })
  h.attach(reconciler)
  return { ...h, ...o, admin: a, reconciler }
}

async function until (what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('Reconciler (in process, with fakes)', () => {
  it('creates the instance, applies its replication, reports it available and completes the task', async () => {
    const t = await setup()
    await t.reconciler.start()
    try {
      await until('task completed', () => t.tasks.get('t1')?.status === 'completed')
      await until('replication applied', () => t.admin.calls.length > 0)
      await t.reconciler.idle()
      expect(t.calls).toEqual([`ensure ${ID}`])
      expect(t.admin.calls).toEqual(['membership n1'])
      const [report] = t.reconciler.observedInstances()
      expect(report).toMatchObject({ id: ID, state: 'available', role: 'primary', generation: 1, node_ready: true, port: 5500 })
      expect(t.settled.at(-1)?.status).toBe('completed')
      expect(t.tasks.get('t1')?.log).toContain('task completed')
      // Level-triggered: once applied, another pass plans nothing.
      t.reconciler.requeue()
      await t.reconciler.idle()
      expect(t.calls).toEqual([`ensure ${ID}`])
    } finally {
      await t.reconciler.stop()
    }
  })

  it('backs off a failing action (0.5 s, then 1 s …), reports the instance failed after three failures, and recovers', async () => {
    const t = await setup()
    let failures = 0
    t.failWith(() => failures++ < 3 ? new Error('docker daemon unreachable') : undefined)
    await t.reconciler.start()
    try {
      // Passes asked for meanwhile (as heartbeats would) do not retry before the pause is over.
      const asking = setInterval(() => { t.reconciler.requeue() }, 10)
      await until('three failures', () => t.calls.length >= 3)
      clearInterval(asking)
      // 0.5 s, then 1 s between attempts.
      const [a = 0, b = 0, c = 0] = t.times
      expect(b - a).toBeGreaterThanOrEqual(490)
      expect(c - b).toBeGreaterThanOrEqual(990)
      const failed = t.reconciler.observedInstances()
      expect(failed).toMatchObject([{ id: ID, state: 'failed', error: 'docker daemon unreachable' }])
      await until('recovered', () => t.reconciler.observedInstances()[0]?.state === 'available', 5000)
      expect(t.calls).toHaveLength(4)
      expect(t.reconciler.observedInstances()[0]?.error).toBeUndefined()
    } finally {
      await t.reconciler.stop()
    }
  })

  it('does not retry a terminal failure (major version change): the instance is failed, the task fails, until the spec changes', async () => {
    const t = await setup()
    t.failWith(s => s.postgresVersion === '17' ? new TerminalError(`instance ${s.instanceId}: major version cannot change from 16 to 17`) : undefined)
    await t.reconciler.start()
    try {
      await until('created', () => t.tasks.get('t1')?.status === 'completed')
      // An update to another major (the orchestrator refuses it for an existing instance).
      t.db.spec = spec('17')
      t.db.generation = 2
      t.db.task_id = 't2'
      t.tasks.set('t2', { task_id: 't2', status: 'pending', origin_host: 'host-1', created_at: new Date().toISOString(), type: 'update', log: [] })
      t.reconciler.requeue()
      await until('task failed', () => t.tasks.get('t2')?.status === 'failed')
      expect(t.settled.at(-1)).toMatchObject({ status: 'failed', error: expect.stringContaining('major version cannot change from 16 to 17') })
      expect(t.reconciler.observedInstances()).toMatchObject([{ id: ID, state: 'failed', generation: 2, error: `instance ${ID}: major version cannot change from 16 to 17` }])
      const attempts = t.calls.filter(c => c.startsWith('ensure')).length
      // Well past every back-off pause: no retry, however many passes run.
      for (let i = 0; i < 5; i++) { t.reconciler.requeue(); await t.reconciler.idle() }
      await new Promise(resolve => setTimeout(resolve, 1200))
      await t.reconciler.idle()
      expect(t.calls.filter(c => c.startsWith('ensure')).length).toBe(attempts)
      expect(t.tasks.get('t2')?.log.some(l => l.includes('not retried until the database is updated'))).toBe(true)
      // The spec changes back: the generation moves, the action runs again and succeeds.
      t.db.spec = spec('16')
      t.db.generation = 3
      t.db.task_id = 't3'
      t.tasks.set('t3', { task_id: 't3', status: 'pending', origin_host: 'host-1', created_at: new Date().toISOString(), type: 'update', log: [] })
      t.reconciler.requeue()
      await until('task completed', () => t.tasks.get('t3')?.status === 'completed')
      expect(t.reconciler.observedInstances()).toMatchObject([{ id: ID, state: 'available', generation: 3 }])
    } finally {
      await t.reconciler.stop()
    }
  })

  it('polls subscriptions: reports them, counts those down, restarts a stalled one, and keeps report timestamps stable', async () => {
    let rows: SubscriptionStatus[] = [{ provider_node: 'n2', name: 'sub_n2_n1', status: 'replicating' }]
    let lag: SubscriberLag[] = [{ subscriber_node: 'n2', lag_bytes: 0 }]
    const t = await setup({ subscriptions: () => rows, lag: () => lag })
    await t.reconciler.start()
    try {
      await until('node ready', () => t.reconciler.observedInstances()[0]?.node_ready === true)
      await t.reconciler.pollSubscriptions()
      const first = t.reconciler.observedInstances()[0]
      expect(first).toMatchObject({ subscriptions: [{ provider_node: 'n2', name: 'sub_n2_n1', status: 'replicating' }], replication: 'pglogical' })
      expect(t.metrics.down).toBe(0)
      await new Promise(resolve => setTimeout(resolve, 20))
      expect(t.reconciler.observedInstances()[0]?.updated_at).toBe(first?.updated_at)
      expect(first?.subscriber_lag).toEqual([{ subscriber_node: 'n2', lag_bytes: 0 }])
      // Lag moves with every write: reported, but not a change of the instance's state (its timestamp stays).
      lag = [{ subscriber_node: 'n2', lag_bytes: 8192 }]
      await t.reconciler.pollSubscriptions()
      expect(t.reconciler.observedInstances()[0]).toMatchObject({ subscriber_lag: [{ subscriber_node: 'n2', lag_bytes: 8192 }], updated_at: first?.updated_at })
      // Down while its provider's primary is reported available: restarted after 1.5 s.
      rows = [{ provider_node: 'n2', name: 'sub_n2_n1', status: 'down' }]
      t.cluster.push({ id: 'db1-n2-x', database_id: 'db1', node_name: 'n2', host_id: 'host-2', state: 'available', role: 'primary', generation: 1, updated_at: '' })
      await t.reconciler.pollSubscriptions()
      expect(t.metrics.down).toBe(1)
      expect(t.reconciler.observedInstances()[0]?.subscriptions).toMatchObject([{ status: 'down' }])
      await new Promise(resolve => setTimeout(resolve, 1600))
      await t.reconciler.pollSubscriptions()
      expect(t.admin.calls).toContain('restart sub_n2_n1')
    } finally {
      await t.reconciler.stop()
    }
  })

  it('reports no subscriptions for a primary whose replication is not applied (new settings cleared it, and applying it fails)', async () => {
    const rows: SubscriptionStatus[] = [{ provider_node: 'n2', name: 'sub_n2_n1', status: 'replicating' }]
    const t = await setup({ subscriptions: () => rows })
    await t.reconciler.start()
    try {
      await until('node ready', () => t.reconciler.observedInstances()[0]?.node_ready === true)
      await t.reconciler.pollSubscriptions()
      expect(t.reconciler.observedInstances()[0]?.subscriptions).toMatchObject([{ status: 'replicating' }])
      // New settings: the instance is updated, which clears its replication hash; applying its replication again fails.
      t.admin.failMembership(new Error('could not connect to the provider'))
      t.db.spec = { ...spec(), postgresql_conf: { work_mem: '8MB' } }
      t.db.generation = 2
      t.reconciler.requeue()
      await until('updated', () => t.reconciler.observedInstances()[0]?.generation === 2 && t.admin.calls.includes('membership n1 failed'))
      // The last poll's report, from before, is not what the node has: it says nothing until replication is applied.
      const updated = t.reconciler.observedInstances()[0]
      expect(updated?.node_ready).toBeUndefined()
      expect(updated?.subscriptions).toBeUndefined()
      t.admin.failMembership(undefined)
      await until('node ready again', () => t.reconciler.observedInstances()[0]?.node_ready === true, 10_000)
      await t.reconciler.pollSubscriptions()
      expect(t.reconciler.observedInstances()[0]?.subscriptions).toMatchObject([{ status: 'replicating' }])
    } finally {
      await t.reconciler.stop()
    }
  })

  it('restarts an instance at its scheduled time, without waiting for the periodic pass or any other event', async () => {
    const t = await setup()
    await t.reconciler.start()
    try {
      await until('task completed', () => t.tasks.get('t1')?.status === 'completed')
      await t.reconciler.idle()
      const at = Date.now() + 800
      t.db.instanceOperations = { [ID]: { stopped: false, restarts: 1, task_id: 't2', restart_at: new Date(at).toISOString() } }
      // The document change that carries the operation; nothing else asks for a pass (the periodic one is a minute).
      t.reconciler.requeue('document')
      await t.reconciler.idle()
      expect(t.calls).not.toContain(`restart ${ID}`)
      await until('restarted', () => t.calls.includes(`restart ${ID}`), 3000)
      const restartedAt = t.times.at(-1) ?? Number.NaN
      expect(restartedAt).toBeGreaterThanOrEqual(at)
      expect(restartedAt - at).toBeLessThan(500)
    } finally {
      await t.reconciler.stop()
    }
  })

  it('stops: no pass runs after stop() resolves', async () => {
    const t = await setup()
    await t.reconciler.start()
    await t.reconciler.stop()
    const before = t.calls.length
    t.reconciler.requeue()
    await t.reconciler.idle()
    expect(t.calls.length).toBe(before)
  })
})
