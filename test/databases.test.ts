// Databases made real: daemons as processes, each reconciling its own Postgres instances (process orchestrator) and
// the pglogical membership of its nodes.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'

type Db = { state: string, instances: Array<{ id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number } }> }

async function waitTask (d: DaemonProcess, databaseId: string, taskId: string, timeoutMs = 90_000): Promise<any> {
  return await until(`task ${taskId} to finish`, async () => {
    const t = (await d.get(`/v1/databases/${databaseId}/tasks/${taskId}`)).body
    if (t.status === 'failed' || t.status === 'canceled') throw new Error(`task ${t.status as string}: ${t.error as string}`)
    return t.status === 'completed' ? t : undefined
  }, timeoutMs, 200)
}

async function connect (db: Db, node: string, database = 'app'): Promise<pg.Client> {
  const instance = db.instances.find(i => i.node_name === node)
  const info = instance?.connection_info
  if (info === undefined) throw new Error(`no connection info for ${node}`)
  const client = new pg.Client({ host: info.addresses[0], port: info.port, user: 'admin', password: 'app-password', database })
  await client.connect()
  return client
}

describe('a three-node database on three hosts', () => {
  let cluster: TestCluster
  let hosts: DaemonProcess[]
  let db: Db
  const clients: pg.Client[] = []

  beforeAll(async () => {
    cluster = await TestCluster.create('databases')
    hosts = await cluster.initAndJoin(3)
  })

  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => {})
    await cluster.destroy()
  })

  it('creates it through any host and it becomes available', async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const started = Date.now()
    const res = await h3.post('/v1/databases', {
      id: 'app',
      spec: {
        database_name: 'app',
        database_users: [{ username: 'admin', password: 'app-password', db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }]
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h3, 'app', res.body.task.task_id)
    console.log(`3-node database available after ${Date.now() - started} ms`)
    db = (await h1.get('/v1/databases/app')).body
    expect(db.state).toBe('available')
    expect(db.instances.map(i => i.state)).toEqual(['available', 'available', 'available'])
    const log = (await h1.get(`/v1/databases/app/tasks/${res.body.task.task_id as string}/log`)).body
    const hostsInLog = new Set(log.entries.map((e: { fields: { host_id: string } }) => e.fields.host_id))
    expect(hostsInLog).toEqual(new Set(['host-1', 'host-2', 'host-3']))
  })

  it('replicates a row inserted on each node to every node', async () => {
    for (const node of ['n1', 'n2', 'n3']) clients.push(await connect(db, node))
    const [c1] = clients as [pg.Client]
    // DDL goes through the replication extension so every node gets it.
    const admin = new pg.Client({ host: db.instances[0]?.connection_info?.addresses[0], port: db.instances[0]?.connection_info?.port, user: 'pgmesh', database: 'app' })
    await admin.connect()
    await admin.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.items (id text PRIMARY KEY, origin text); GRANT ALL ON public.items TO admin', '{ddl_sql}')")
    await admin.end()
    await until('table everywhere', async () => {
      for (const c of clients) {
        const r = await c.query("SELECT to_regclass('public.items') AS t")
        if (r.rows[0].t === null) return false
      }
      return true
    }, 20_000)
    for (const [i, c] of clients.entries()) await c.query('INSERT INTO items VALUES ($1, $2)', [`row-n${i + 1}`, `n${i + 1}`])
    await until('every row on every node', async () => {
      for (const c of clients) if (Number((await c.query('SELECT count(*) FROM items')).rows[0].count) !== 3) return false
      return true
    }, 20_000)
    void c1
  })

  it('deletes it: no instance, process or directory is left on any host', async () => {
    const [h1, h2] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    for (const c of clients.splice(0)) await c.end()
    const res = await h2.request('DELETE', '/v1/databases/app')
    expect(res.status).toBe(200)
    await waitTask(h2, 'app', res.body.task.task_id)
    expect((await h1.get('/v1/databases/app')).status).toBe(404)
    const { readdir } = await import('node:fs/promises')
    for (const h of hosts) expect(await readdir(`${h.options.dataDir}/instances`).catch(() => [])).toEqual([])
  })
})
