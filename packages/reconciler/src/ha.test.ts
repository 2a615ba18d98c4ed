import type { DesiredDatabaseRecord } from '@pgmesh/cluster'
import { instanceId } from '@pgmesh/model'
import type { LeaseOutcome } from '@pgmesh/lease'
import type { InstanceStatus } from '@pgmesh/orchestrator'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import type { ReconcilerHost } from './deps.js'
import { HighAvailability } from './ha.js'
import type { InstanceAdmin } from './instance-admin.js'
import { InstanceQueues } from './queue.js'

// The HA loop in process: fakes of the lease keeper, the host and the instance admin. What is checked is the rule of
// part 5: the loop decides (fenced, held, synchronous), the instance queue carries it out, and fencing never waits.

const logger = pino({ level: 'silent' })
const PRIMARY = instanceId('db1', 'n1', 'host-1')
const REPLICA = instanceId('db1', 'n1', 'host-2')

function gate (): { wait: Promise<void>, open: () => void } {
  let open!: () => void
  const wait = new Promise<void>(resolve => { open = resolve })
  return { wait, open }
}

interface SetupOptions {
  held: () => boolean
  local?: InstanceStatus
  /** The replica's view (host-2, PRIMARY's host silent) instead of the primary's. */
  asReplica?: { request: (key: string, holder: string, term: number) => Promise<Partial<LeaseOutcome>> }
}

function setup (options: SetupOptions) {
  const calls: string[] = []
  const lost: Array<() => void> = []
  const db: DesiredDatabaseRecord = {
    id: 'db1', generation: 1, deleted: false, task_id: 't1', sources: {}, primaries: {}, instanceOperations: {}, primaryChanges: {},
    spec: { database_name: 'app', port: 0, nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }], database_users: [] } as never
  }
  const fences: number[] = []
  const leases = {
    options: { durationMs: 4000 },
    keep: (_key: string, holder: string, term: number, fenceMs: number, onLost: () => void) => {
      fences.push(fenceMs)
      lost.push(onLost)
      return { holder, term, held: options.held, eligible: [], confirmedEligible: [], setEligible: async () => true, stop: async () => {} }
    },
    request: options.asReplica?.request ?? (async () => ({ held: false, granted: 0, voters: 3, highestTerm: 0 })),
    release: async () => {}
  }
  const host = {
    hostId: options.asReplica === undefined ? 'host-1' : 'host-2', dataDir: '/nonexistent',
    document: { doc: {}, on: () => {} },
    databases: { desired: () => [db], generations: () => new Map(), settle: async () => {}, recover: async () => false },
    tasks: { get: () => undefined, log: async () => {}, settle: async () => {} },
    operations: { recordPrimary: async () => {} },
    runtime: { initialized: true, leases, on: () => {}, beat: () => {} },
    health: {
      clusterInstances: () => options.asReplica === undefined ? [] : [{ id: REPLICA, role: 'replica', state: 'available' }],
      reachableHosts: () => new Set(),
      lastHeardFrom: (hostId: string) => options.asReplica !== undefined && hostId === 'host-1' ? Date.now() - 10_000 : Date.now()
    },
    metrics: {}
  } as unknown as ReconcilerHost
  const admin = {
    setReadOnly: async (id: string, on: boolean) => { calls.push(`read-only ${id} ${String(on)}`) },
    synchronousNow: async () => [],
    drainToPeers: async () => '0/0',
    waitReplayed: async () => {}
  } satisfies Partial<InstanceAdmin>
  const control = {
    stopInstance: async (id: string) => { calls.push(`stop ${id}`); return {} as InstanceStatus },
    startInstance: async (id: string) => { calls.push(`start ${id}`); return {} as InstanceStatus }
  }
  const queues = new InstanceQueues()
  let requeues = 0
  const ha = new HighAvailability({
    host, admin, control, queues, logger, requeue: () => { requeues++ }, taskLog: async () => {},
    localStatus: id => options.asReplica !== undefined
      ? (id === REPLICA ? { instanceId: REPLICA, state: 'running', role: 'replica', port: 1, postgresVersion: '16', admin: { host: '/tmp', port: 1, user: 'pgmesh' } } : undefined)
      : (id === PRIMARY ? options.local : undefined)
  })
  return { ha, calls, lost, fences, queues, requeues: () => requeues }
}

async function until (what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('HighAvailability (in process, with fakes)', () => {
  it('fences at once through the queue, even while an action runs on the instance; actions queued after it wait', async () => {
    const t = setup({ held: () => true })
    const slow = gate()
    const order: string[] = []
    const ensure = t.queues.run(PRIMARY, 'normal', 'ensure-instance', async () => { await slow.wait; order.push('ensure done') })
    const next = t.queues.run(PRIMARY, 'normal', 'ensure-replication', async () => { order.push(`replication (fenced: ${String(t.ha.fenced.has(PRIMARY))})`) })
    const fencing = t.ha.fence('db1', PRIMARY)
    // Published before anything ran: the planner and the queue's jobs see it at once.
    expect(t.ha.fenced.has(PRIMARY)).toBe(true)
    await fencing
    expect(t.calls).toEqual([`read-only ${PRIMARY} true`, `stop ${PRIMARY}`])
    expect(order).toEqual([])
    slow.open()
    await Promise.all([ensure, next])
    expect(order).toEqual(['ensure done', 'replication (fenced: true)'])
    expect(t.requeues()).toBeGreaterThan(0)
  })

  it('a primary found running at start is fenced until its lease is held, then unfenced by a queued job', async () => {
    let held = false
    const t = setup({ held: () => held, local: { instanceId: PRIMARY, state: 'running', role: 'primary', port: 1, postgresVersion: '16', admin: { host: '/tmp', port: 1, user: 'pgmesh' } } })
    t.ha.start()
    try {
      await until('fenced as found running', () => t.ha.fenced.has(PRIMARY))
      await new Promise(resolve => setTimeout(resolve, 600))
      expect(t.calls).toEqual([])
      expect(t.ha.held()).toEqual([])
      held = true
      await until('unfenced', () => !t.ha.fenced.has(PRIMARY))
      expect(t.calls).toEqual([`start ${PRIMARY}`, `read-only ${PRIMARY} false`])
      expect(t.ha.held()).toEqual([PRIMARY])
      // The fence margin follows the lease's duration (--lease-ms): a quarter, 1 s of this test's 4 s.
      expect(t.fences).toEqual([1000])
      // Unfenced once: later ticks do not queue it again.
      await new Promise(resolve => setTimeout(resolve, 600))
      expect(t.calls).toHaveLength(2)
    } finally {
      await t.ha.stop()
    }
  })

  it('an unfence that finds the lease lost again meanwhile leaves the primary fenced', async () => {
    let held = true
    const t = setup({ held: () => held, local: { instanceId: PRIMARY, state: 'running', role: 'primary', port: 1, postgresVersion: '16', admin: { host: '/tmp', port: 1, user: 'pgmesh' } } })
    // An action runs on the primary, so the unfence waits in the queue.
    const slow = gate()
    const running = t.queues.run(PRIMARY, 'normal', 'ensure-replication', async () => { await slow.wait })
    t.ha.start()
    try {
      await until('unfence queued', () => t.queues.jobs(PRIMARY).includes('unfence'))
      held = false
      slow.open()
      await running
      await until('queue idle', () => t.queues.jobs(PRIMARY).length === 0)
      expect(t.ha.fenced.has(PRIMARY)).toBe(true)
      expect(t.calls).toEqual([])
    } finally {
      await t.ha.stop()
    }
  })

  it('stops and starts nothing by itself while a new primary waits for its first grant', async () => {
    const t = setup({ held: () => false })
    t.ha.start()
    try {
      await new Promise(resolve => setTimeout(resolve, 600))
      expect(t.ha.fenced.has(REPLICA)).toBe(false)
      expect(t.calls).toEqual([])
    } finally {
      await t.ha.stop()
    }
  })

  it('a replica waiting for a dead primary\'s lease asks again when the voters said it ends, not a tick later', async () => {
    const asked: number[] = []
    const t = setup({
      held: () => false,
      asReplica: {
        request: async (_key, _holder, term) => {
          asked.push(performance.now())
          return { held: false, granted: 0, voters: 3, highestTerm: term, ...(asked.length === 1 ? { freeInMs: 60 } : {}) }
        }
      }
    })
    t.ha.start()
    try {
      await until('asked twice', () => asked.length >= 2)
      // The regular tick would ask 250 ms after the first request.
      expect((asked[1] as number) - (asked[0] as number)).toBeLessThan(200)
    } finally {
      await t.ha.stop()
    }
  })
})
