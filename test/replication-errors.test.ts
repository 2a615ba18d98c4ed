// A subscription whose apply worker fails, with real daemons, Postgres and pglogical: the failure shows (subscription
// down with the server's error, instance and database degraded, metrics), a task waiting on it fails within the bound
// with that error, and once the cause is fixed by hand everything comes back by itself.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'

/** outcome.ts REPLICATION_FAILURE_BOUND_MS. */
const BOUND_MS = 60_000

type Subscription = { provider_node: string, name: string, status: string, error?: string, failing_since?: string }
type Instance = { id: string, node_name: string, state: string, error?: string, connection_info?: { addresses: string[], port: number }, spock?: { subscriptions: Subscription[] } }
type Db = { state: string, spec: Record<string, unknown>, instances: Instance[] }

let cluster: TestCluster | undefined
let h1: DaemonProcess
let h2: DaemonProcess
const sessions: pg.Client[] = []

/** A superuser session on a node's primary (the control plane's own user, as the tests' DDL uses). */
async function superuser (db: Db, node: string): Promise<pg.Client> {
  const info = db.instances.find(i => i.node_name === node)?.connection_info
  const client = new pg.Client({ host: info?.addresses[0], port: info?.port, user: 'pgmesh', password: await h1.superuserPassword(), database: 'errs' })
  client.on('error', () => {})
  await client.connect()
  sessions.push(client)
  return client
}

async function database (d: DaemonProcess): Promise<Db> {
  return (await d.get('/v1/databases/errs')).body
}

const subscription = (db: Db, node: string, name: string): Subscription | undefined =>
  db.instances.find(i => i.node_name === node)?.spock?.subscriptions.find(s => s.name === name)

async function metric (d: DaemonProcess, name: string): Promise<number> {
  const text = await (await fetch(`${d.url}/metrics`)).text()
  const value = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]
  if (value === undefined) throw new Error(`no metric ${name} on ${d.hostId}`)
  return Number(value)
}

async function task (d: DaemonProcess, taskId: string): Promise<{ status: string, error?: string }> {
  return (await d.get(`/v1/databases/errs/tasks/${taskId}`)).body
}

describe('a subscription whose apply worker fails', () => {
  let n1: pg.Client
  let n2: pg.Client

  beforeAll(async () => {
    cluster = await TestCluster.create('repl-errors')
    ;[h1, h2] = await cluster.initAndJoin(2) as [DaemonProcess, DaemonProcess]
    const res = await h1.post('/v1/databases', {
      id: 'errs',
      spec: { database_name: 'errs', nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }] }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await until('the database created', async () => (await task(h1, res.body.task.task_id)).status === 'completed', 90_000, 200)
      .catch((err: Error) => { throw new Error(`${err.message}\n${cluster?.problems() ?? ''}`) })
    const db = await database(h1)
    n1 = await superuser(db, 'n1')
    n2 = await superuser(db, 'n2')
    await n1.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.t (id int primary key, v int)')")
    await until('the table on n2', async () => (await n2.query("SELECT to_regclass('public.t') IS NOT NULL AS t")).rows[0].t === true, 20_000, 100)
  }, 150_000)

  afterAll(async () => {
    for (const c of sessions) await c.end().catch(() => {})
    await cluster?.destroy()
  })

  it('shows down with the check constraint error, the instance and database degraded, and the metrics moved', async () => {
    // Only on n2: its subscription from n1 then meets a row it cannot apply.
    await n2.query('SET pgmesh.replicate_ddl = off')
    await n2.query('ALTER TABLE public.t ADD CONSTRAINT v_small CHECK (v < 100)')
    const errorsBefore = await metric(h2, 'pgmesh_subscription_apply_errors_total')
    expect(await metric(h2, 'pgmesh_subscriptions_down')).toBe(0)
    const inserted = Date.now()
    await n1.query('INSERT INTO public.t VALUES (1, 500)')
    const db = await until('sub_n1_n2 down with its error, seen from host-1', async () => {
      const seen = await database(h1)
      return subscription(seen, 'n2', 'sub_n1_n2')?.error === undefined ? undefined : seen
    }, 30_000, 200)
    console.log(`apply error visible through the API ${Date.now() - inserted} ms after the insert`)
    const sub = subscription(db, 'n2', 'sub_n1_n2')
    expect(sub?.status).toBe('down')
    expect(sub?.error).toMatch(/violates check constraint "v_small"/)
    // The failing row's values stay in the server log: the server's DETAIL would read "Failing row contains (1, 500)".
    // (A bare '500' is no test: the error's commit timestamp can contain it.)
    expect(sub?.error).not.toMatch(/Failing row|\(1, 500\)/)
    // Failing for 10 s (longer than a provider's restart or a failover interrupts replication): degraded.
    const degraded = await until('n2 and the database degraded', async () => {
      const seen = await database(h1)
      return seen.state === 'degraded' ? seen : undefined
    }, 30_000, 200)
    console.log(`instance and database degraded ${Date.now() - inserted} ms after the insert`)
    expect(subscription(degraded, 'n2', 'sub_n1_n2')?.failing_since).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    const instance = degraded.instances.find(i => i.node_name === 'n2')
    expect(instance?.state).toBe('degraded')
    expect(instance?.error).toMatch(/^subscription sub_n1_n2: new row for relation "t" violates check constraint "v_small"/)
    expect(degraded.instances.find(i => i.node_name === 'n1')?.state).toBe('available')
    await until('the metrics moved on host-2', async () =>
      await metric(h2, 'pgmesh_subscriptions_down') === 1 && await metric(h2, 'pgmesh_subscription_apply_errors_total') > errorsBefore, 10_000, 200)
    expect(await metric(h1, 'pgmesh_subscriptions_down')).toBe(0)
  })

  it('fails an update waiting for it within the bound, with the error as the reason', { timeout: BOUND_MS + 60_000 }, async () => {
    const spec = (await database(h1)).spec
    const started = Date.now()
    const res = await h1.post('/v1/databases/errs', { spec: { ...spec, postgresql_conf: { work_mem: '8MB' } } })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    const failed = await until('the update failed', async () => {
      const t = await task(h1, res.body.task.task_id)
      if (t.status === 'completed') throw new Error('the update completed')
      return t.status === 'failed' ? t : undefined
    }, BOUND_MS + 30_000, 250)
    const tookMs = Date.now() - started
    console.log(`update failed ${tookMs} ms after it was accepted (bound ${BOUND_MS} ms): ${failed.error ?? ''}`)
    // Timestamps have second precision, hence the second of slack below the bound.
    expect(tookMs).toBeGreaterThanOrEqual(BOUND_MS - 1000)
    expect(tookMs).toBeLessThan(BOUND_MS + 15_000)
    expect(failed.error).toMatch(/^instance errs-n2-\w+: subscription sub_n1_n2 has been down since \S+: new row for relation "t" violates check constraint "v_small"/)
    expect((await database(h2)).state).toBe('failed')
    // The update itself was applied meanwhile: it is only replication that failed.
    expect((await n2.query('SHOW work_mem')).rows[0].work_mem).toBe('8MB')
  })

  it('recovers by itself once the constraint is dropped: the row arrives, replicating, the database available', { timeout: 120_000 }, async () => {
    const fixed = Date.now()
    await n2.query('ALTER TABLE public.t DROP CONSTRAINT v_small')
    await until('the row on n2', async () => (await n2.query('SELECT v FROM public.t WHERE id = 1')).rowCount === 1, 60_000, 200)
    const arrived = Date.now() - fixed
    const db = await until('the database available again', async () => {
      const seen = await database(h2)
      return seen.state === 'available' ? seen : undefined
    }, 30_000, 200)
    console.log(`after the fix: row on n2 in ${arrived} ms, database available in ${Date.now() - fixed} ms`)
    // The anchor's fields; pgmesh's lag_bytes comes beside them once the provider has reported it.
    expect(subscription(db, 'n2', 'sub_n1_n2')).toMatchObject({ provider_node: 'n1', name: 'sub_n1_n2', status: 'replicating' })
    expect(db.instances.map(i => [i.node_name, i.state, i.error])).toEqual([['n1', 'available', undefined], ['n2', 'available', undefined]])
    expect((await database(h1)).state).toBe('available')
    expect(await metric(h2, 'pgmesh_subscriptions_down')).toBe(0)
    // And replication goes on both ways.
    await n2.query('INSERT INTO public.t VALUES (2, 1)')
    await until('a row from n2 on n1', async () => (await n1.query('SELECT 1 FROM public.t WHERE id = 2')).rowCount === 1, 15_000, 100)
  })
})
