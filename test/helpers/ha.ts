// The database `ha` of the high-availability tests (process and swarm orchestrators alike): node n1 has a primary and
// a streaming replica, n2 is another node; table public.events (id, src). Helpers to find the current primary, write
// through it while it changes, and check that every acknowledged row arrived.
import pg from 'pg'
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
    const log = (await d.get(`/v1/databases/ha/tasks/${taskId}/log`)).body
    const lines = (log.entries as Array<{ timestamp: string, message: string, fields: { host_id: string } }>).map(e => `${e.timestamp} ${e.fields.host_id} ${e.message}`)
    throw new Error(`task ${task.status as string}: ${task.error as string}\n${lines.join('\n')}\n${problems()}`)
  }
  return task
}

export async function database (d: DaemonProcess): Promise<Db> {
  return (await d.get<Db>('/v1/databases/ha')).body
}

export function primaryOf (db: Db, node: string): Instance | undefined {
  return db.instances.find(i => i.node_name === node && i.postgres?.role === 'primary' && i.state === 'available')
}

export async function connectTo (instance: Instance | undefined, user = 'admin'): Promise<pg.Client> {
  const info = instance?.connection_info
  if (info === undefined) throw new Error('no connection info')
  const client = new pg.Client({ host: info.addresses[0], port: info.port, user, password: PASSWORD, database: 'ha', connectionTimeoutMillis: 3000, statement_timeout: 10_000, query_timeout: 10_000 })
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

/** A row inserted on n2's primary arrives on n1's primary, wherever each is now. */
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
    const c = await connectTo(primaryOf(await database(d), node), 'pgmesh').catch(() => undefined)
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
