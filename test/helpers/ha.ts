// The database `ha` of the high-availability tests (process and swarm orchestrators alike): node n1 has a primary and
// a streaming replica, n2 is another node; table public.events (id, src). Helpers to find the current primary, write
// through it while it changes, and check that every acknowledged row arrived.
import pg from 'pg'
import { expect } from 'vitest'
import { type DaemonProcess, until } from './cluster.js'

export const PASSWORD = 'ha-password'

export interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { role?: string } }
export interface Db { state: string, instances: Instance[] }

/** Until the task ends; a failed one throws with its log and whatever `problems` reports. */
export async function waitTask (d: DaemonProcess, taskId: string, timeoutMs = 90_000, problems: () => string = () => ''): Promise<any> {
  const task = await until(`task ${taskId} to finish`, async () => {
    const t = (await d.get(`/v1/databases/ha/tasks/${taskId}`)).body
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, timeoutMs, 200)
  if (task.status !== 'completed') {
    throw new Error(`task ${task.status as string}: ${task.error as string}\n${await taskLog(d, taskId)}\n${problems()}`)
  }
  return task
}

/**
 * Creates the database (n1's primary on host-1 and its replica on host-2, n2 on host-3; `extra` goes into the spec)
 * and checks that every instance reports its role.
 */
export async function createHaDatabase (h1: DaemonProcess, waitTask: WaitTask, extra: Record<string, unknown> = {}): Promise<Db> {
  const res = await h1.post('/v1/databases', {
    id: 'ha',
    spec: {
      database_name: 'ha',
      database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
      nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-3'] }],
      ...extra
    }
  })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
  await waitTask(h1, res.body.task.task_id as string)
  const db = await database(h1)
  const roles = db.instances.map(i => `${i.node_name} ${i.host_id} ${i.postgres?.role ?? '-'} ${i.state}`)
  expect(roles.sort()).toEqual(['n1 host-1 primary available', 'n1 host-2 replica available', 'n2 host-3 primary available'])
  for (const i of db.instances) expect(i.connection_info?.port).toBeGreaterThan(0)
  return db
}

/** A task's log lines, `time host message`. */
async function taskLog (d: DaemonProcess, taskId: string): Promise<string> {
  const log = (await d.get(`/v1/databases/ha/tasks/${taskId}/log`)).body
  return (log.entries as Array<{ timestamp: string, message: string, fields: { host_id: string } }>).map(e => `${e.timestamp} ${e.fields.host_id} ${e.message}`).join('\n')
}

export async function database (d: DaemonProcess): Promise<Db> {
  return (await d.get<Db>('/v1/databases/ha')).body
}

/** The node's serving primary: `degraded` too (a primary whose subscription fails still takes writes). */
export function primaryOf (db: Db, node: string): Instance | undefined {
  return db.instances.find(i => i.node_name === node && i.postgres?.role === 'primary' && (i.state === 'available' || i.state === 'degraded'))
}

export async function connectTo (instance: Instance | undefined, user = 'admin', password = PASSWORD): Promise<pg.Client> {
  const info = instance?.connection_info
  if (info === undefined) throw new Error('no connection info')
  const client = new pg.Client({ host: info.addresses[0], port: info.port, user, password, database: 'ha', connectionTimeoutMillis: 3000, statement_timeout: 10_000, query_timeout: 10_000 })
  client.on('error', () => {})
  await client.connect()
  return client
}

/**
 * Inserts numbered rows into node n1 through whichever instance the API says is its primary, reconnecting on any
 * error; remembers which inserts were acknowledged.
 */
export class Writer {
  readonly acknowledged: number[] = []
  readonly acknowledgedAt = new Map<number, number>()
  failures = 0
  private next = 0
  private stopped = false
  private done: Promise<void> | undefined

  constructor (private readonly via: () => DaemonProcess, private readonly prefix: string) {}

  start (): void {
    this.done = (async () => {
      let client: pg.Client | undefined
      while (!this.stopped) {
        try {
          client ??= await connectTo(primaryOf(await database(this.via()), 'n1'))
          const id = this.next++
          await client.query('INSERT INTO public.events VALUES ($1, $2)', [`${this.prefix}-${id}`, this.prefix])
          this.acknowledged.push(id)
          this.acknowledgedAt.set(id, Date.now())
        } catch {
          this.failures++
          await client?.end().catch(() => {})
          client = undefined
          await new Promise(resolve => setTimeout(resolve, 100))
        }
      }
      await client?.end().catch(() => {})
    })()
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.done
  }
}

export async function ids (client: pg.Client, prefix: string): Promise<Set<string>> {
  return new Set((await client.query('SELECT id FROM public.events WHERE src = $1', [prefix])).rows.map(r => r.id as string))
}

/** A row inserted on n2's primary arrives on n1's primary, wherever each is now (`id` unique per call). */
export async function expectN2RowOnN1 (d: DaemonProcess, id: string): Promise<void> {
  const n2 = await connectTo(primaryOf(await database(d), 'n2'))
  await n2.query('INSERT INTO public.events VALUES ($1, $2)', [id, 'n2'])
  await n2.end()
  await until(`n2 row ${id} on n1`, async () => {
    const c = await connectTo(primaryOf(await database(d), 'n1'))
    try { return (await c.query('SELECT 1 FROM public.events WHERE id = $1', [id])).rowCount === 1 } finally { await c.end() }
  }, 30_000, 500)
}

/**
 * Subscriptions and slots of every node's primary, to explain a replication failure (as `pgmesh`, which only peers
 * may be: on loopback, not from outside a swarm testbed).
 */
async function replicationState (d: DaemonProcess): Promise<string> {
  const out: string[] = []
  for (const node of ['n1', 'n2']) {
    const c = await connectTo(primaryOf(await database(d), node), 'pgmesh', await d.superuserPassword()).catch(() => undefined)
    if (c === undefined) return 'replication state: not reachable as pgmesh from here'
    try {
      const subs = await c.query('SELECT s.sub_name, s.sub_enabled, i.if_dsn, st.status FROM pglogical.subscription s JOIN pglogical.node_interface i ON i.if_id = s.sub_origin_if JOIN pglogical.show_subscription_status() st ON st.subscription_name = s.sub_name')
      const slots = await c.query('SELECT slot_name, active, confirmed_flush_lsn::text, pg_current_wal_lsn()::text AS now FROM pg_replication_slots')
      out.push(`${node}: subs ${JSON.stringify(subs.rows)} slots ${JSON.stringify(slots.rows)}`)
    } finally {
      await c.end()
    }
  }
  return out.join('\n')
}

/** Every row the writer got acknowledged is on n1's and n2's primaries (asked through `observer`'s API). */
export async function expectAllArrived (observer: DaemonProcess, writer: Writer, prefix: string): Promise<void> {
  const wanted = writer.acknowledged.map(i => `${prefix}-${i}`)
  for (const node of ['n1', 'n2']) {
    await until(`every acknowledged ${prefix} row on ${node}`, async () => {
      const c = await connectTo(primaryOf(await database(observer), node))
      try {
        const have = await ids(c, prefix)
        return wanted.every(id => have.has(id))
      } finally {
        await c.end()
      }
    }, 60_000, 500).catch(async (err: Error) => {
      const c = await connectTo(primaryOf(await database(observer), node))
      const have = await ids(c, prefix)
      await c.end()
      const missing = writer.acknowledged.filter(i => !have.has(`${prefix}-${i}`)).map(i => `${i}@${writer.acknowledgedAt.get(i) ?? 0}`)
      throw new Error(`${err.message}\nmissing on ${node}: ${missing.length}: ${missing.slice(0, 5).join(' ')} … ${missing.slice(-3).join(' ')}\n${await replicationState(observer)}`)
    })
  }
}

export type WaitTask = (d: DaemonProcess, taskId: string, timeoutMs?: number) => Promise<unknown>

/**
 * Restarts, stops and starts the replica `replicaId` through the API (h1 and h3 ask), checking the anchor's refusals
 * in the wrong states; `whileStopped` checks how the orchestrator left it. The primary takes writes meanwhile, and
 * the replica, back, catches up.
 */
export async function stopStartRestartReplica (h1: DaemonProcess, h3: DaemonProcess, replicaId: string, waitTask: WaitTask, whileStopped: () => Promise<void> = async () => {}): Promise<void> {
  const path = (op: string, id = replicaId): string => `/v1/databases/ha/instances/${id}/${op}`
  const instance = async (): Promise<Instance | undefined> => (await database(h1)).instances.find(i => i.id === replicaId)
  expect((await h3.post(path('restart', 'ha-n1-nosuch'), {})).status).toBe(404)
  const startAvailable = await h3.post(path('start-instance'))
  expect(startAvailable.status).toBe(400)
  expect(startAvailable.body.message).toMatch(/cannot be started, it is in available state/)
  expect((await h3.post(path('restart'), { scheduled_at: '2000-01-01T00:00:00Z' })).body.message).toMatch(/scheduled_at must be in the future/)

  const before = await connectTo(await instance())
  const startedAt = (await before.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t as string
  await before.end()
  const restart = await h3.post(path('restart'), {})
  expect(restart.status, JSON.stringify(restart.body)).toBe(200)
  expect(restart.body.task.type).toBe('restart_instance')
  await waitTask(h3, restart.body.task.task_id as string)
  const after = await connectTo(await instance())
  expect((await after.query('SELECT pg_postmaster_start_time()::text AS t, pg_is_in_recovery() AS replica')).rows[0]).toMatchObject({ replica: true })
  expect((await after.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t).not.toBe(startedAt)
  await after.end()

  const stop = await h1.post(path('stop-instance'))
  expect(stop.status, JSON.stringify(stop.body)).toBe(200)
  await waitTask(h1, stop.body.task.task_id as string)
  expect((await instance())?.state).toBe('stopped')
  await whileStopped()
  const restartStopped = await h1.post(path('restart'), {})
  expect(restartStopped.status).toBe(400)
  expect(restartStopped.body.message).toBe(`instance ${replicaId} is not restartable, it is in stopped state`)
  expect((await h1.post(path('stop-instance'))).body.message).toMatch(/cannot be stopped, it is in stopped state/)
  // The primary keeps taking writes while its only replica is stopped.
  const primary = await connectTo(primaryOf(await database(h1), 'n1'))
  await primary.query("INSERT INTO public.events VALUES ('while-stopped', 'stop')")
  await primary.end()

  const start = await h1.post(path('start-instance'))
  expect(start.status, JSON.stringify(start.body)).toBe(200)
  await waitTask(h1, start.body.task.task_id as string)
  const back = await instance()
  expect(back?.postgres?.role).toBe('replica')
  const replicaClient = await connectTo(back)
  await until('the replica to catch up', async () => (await replicaClient.query("SELECT 1 FROM public.events WHERE id = 'while-stopped'")).rowCount === 1, 30_000)
  await replicaClient.end()
}

/**
 * Switches n1 over from host-1 to host-2 and back (h2 asks, h1 and h3 observe) while a writer inserts: the former
 * primary follows the new one each time, no acknowledged row is lost on n1 or n2, and n2's writes reach n1.
 * `beforeEach` runs before each switchover, given the current primary and the candidate.
 */
export async function switchOverThereAndBack (
  h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess, waitTask: WaitTask, followTimeoutMs: number,
  beforeEach: (primary: Instance, candidate: Instance) => Promise<void> = async () => {}
): Promise<void> {
  const writer = new Writer(() => h3, 'sw')
  writer.start()
  await until('some writes', () => writer.acknowledged.length > 20, 20_000)
  for (const [from, to] of [['host-1', 'host-2'], ['host-2', 'host-1']] as const) {
    const current = await database(h3)
    const candidate = current.instances.find(i => i.node_name === 'n1' && i.host_id === to)
    const primary = primaryOf(current, 'n1')
    expect(primary?.host_id).toBe(from)
    if (primary === undefined || candidate === undefined) throw new Error('no primary or candidate')
    await beforeEach(primary, candidate)
    const started = Date.now()
    const res = await h2.post('/v1/databases/ha/nodes/n1/switchover', { candidate_instance_id: candidate.id })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    expect(res.body.task.type).toBe('switchover')
    await waitTask(h2, res.body.task.task_id as string)
    console.log(`switchover ${from} -> ${to} took ${Date.now() - started} ms (from ${started} to ${Date.now()})\n${await taskLog(h2, res.body.task.task_id as string)}`)
    const rebuilt = await until(`${from} to follow ${to} as a replica`, async () => {
      const now = (await database(h1)).instances.find(i => i.node_name === 'n1' && i.host_id === from)
      return now?.postgres?.role === 'replica' && now.state === 'available' ? now : undefined
    }, followTimeoutMs, 250)
    // Rebuilt from the new primary, it still answers where clients knew it.
    expect(rebuilt.connection_info?.port).toBe(primary.connection_info?.port)
    const mark = writer.acknowledged.length
    await until('writes through the new primary', () => writer.acknowledged.length > mark + 20, 30_000)
  }
  await writer.stop()
  console.log(`writer: ${writer.acknowledged.length} acknowledged, ${writer.failures} failed attempts`)
  await expectAllArrived(h3, writer, 'sw')
  await expectN2RowOnN1(h1, 'from-n2')
}

/**
 * Writes through n1's primary while `kill` ends its host: `survivor` becomes primary and takes writes, every row
 * the dead primary acknowledged is on it (synchronous replication), the later ones reach n2, and n2's writes reach
 * it. Returns the time from the kill to the first write through the new primary. `prefix` names this run's rows.
 */
export async function writeThroughHostDeath (observer: DaemonProcess, survivor: string, kill: () => Promise<void>, prefix = 'kill'): Promise<number> {
  const writer = new Writer(() => observer, prefix)
  writer.start()
  await until('some writes', () => writer.acknowledged.length > 20, 20_000)
  const killedAt = Date.now()
  await kill()
  // At most one insert was in flight when the host died: two more acknowledged ones went through the new primary.
  const mark = writer.acknowledged.length
  await until('a write through the new primary', async () => writer.acknowledged.length > mark + 1 && primaryOf(await database(observer), 'n1')?.host_id === survivor, 60_000, 20)
  const failoverMs = Date.now() - killedAt
  console.log(`failover: the new primary took a write ${failoverMs} ms after the primary's host died`)
  await until('more writes', () => writer.acknowledged.length > mark + 20, 30_000)
  await writer.stop()
  const c = await connectTo(primaryOf(await database(observer), 'n1'))
  const have = await ids(c, prefix)
  await c.end()
  const acknowledged = writer.acknowledged.map(i => `${prefix}-${i}`)
  expect(acknowledged.filter(id => !have.has(id))).toEqual([])
  const afterFailover = acknowledged.slice(mark)
  const n2 = await connectTo(primaryOf(await database(observer), 'n2'))
  await until('writes after the failover on n2', async () => { const got = await ids(n2, prefix); return afterFailover.every(id => got.has(id)) }, 30_000, 500)
  const n2has = await ids(n2, prefix)
  await n2.end()
  console.log(`rows acknowledged by the dead primary that never reached n2: ${acknowledged.filter(id => !n2has.has(id)).length}`)
  // n2's subscriptions came over with the promotion.
  await expectN2RowOnN1(observer, `${prefix}-after-failover-from-n2`)
  return failoverMs
}
