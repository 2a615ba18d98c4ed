// Databases made real: daemons as processes, each reconciling its own Postgres instances (process orchestrator) and
// the pglogical membership of its nodes.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'

let cluster: TestCluster | undefined

type Db = { state: string, instances: Array<{ id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number } }> }

async function waitTask (d: DaemonProcess, databaseId: string, taskId: string, timeoutMs = 90_000): Promise<any> {
  let failed: string | undefined
  try {
    return await until(`task ${taskId} to finish`, async () => {
      const t = (await d.get(`/v1/databases/${databaseId}/tasks/${taskId}`)).body
      if (t.status === 'failed' || t.status === 'canceled') failed = `task ${t.status as string}: ${t.error as string}`
      return t.status === 'completed' || failed !== undefined ? t : undefined
    }, timeoutMs, 200)
  } finally {
    if (failed !== undefined || (await d.get(`/v1/databases/${databaseId}/tasks/${taskId}`)).body.status !== 'completed') {
      // Say what the hosts did, so a failure explains itself.
      const log = (await d.get(`/v1/databases/${databaseId}/tasks/${taskId}/log`)).body
      const lines = (log.entries as Array<{ timestamp: string, message: string, fields: { host_id: string } }>).map(e => `${e.timestamp} ${e.fields.host_id} ${e.message}`)
      // eslint-disable-next-line no-unsafe-finally
      throw new Error(`${failed ?? 'task did not complete'}\n${lines.join('\n')}\n${cluster?.problems() ?? ''}`)
    }
  }
}

async function connect (db: Db, node: string, database = 'app', password = 'app-password'): Promise<pg.Client> {
  const instance = db.instances.find(i => i.node_name === node)
  const info = instance?.connection_info
  if (info === undefined) throw new Error(`no connection info for ${node}`)
  const client = new pg.Client({ host: info.addresses[0], port: info.port, user: 'admin', password, database })
  // A restart by the reconciler ends open sessions; that is expected here.
  client.on('error', () => {})
  await client.connect()
  return client
}

describe('a three-node database on three hosts', () => {
  let hosts: DaemonProcess[]
  let db: Db
  const clients: pg.Client[] = []

  beforeAll(async () => {
    cluster = await TestCluster.create('databases')
    hosts = await cluster.initAndJoin(3)
  })

  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => {})
    await cluster?.destroy()
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
    const admin = new pg.Client({ host: db.instances[0]?.connection_info?.addresses[0], port: db.instances[0]?.connection_info?.port, user: 'pgmesh', password: await hosts[0]?.superuserPassword(), database: 'app' })
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
    expect(c1).toBeDefined()
  })

  it('keeps the list\'s ETag and every status_updated_at while nothing changes, across heartbeats', async () => {
    const h1 = hosts[0] as DaemonProcess
    const list = async (headers: Record<string, string> = {}): Promise<Response> => await fetch(`${h1.url}/v1/databases`, { headers })
    // Subscriptions may still be settling right after the create; once they have, repeated heartbeats say nothing new.
    await until('an unchanged list answered 304 three heartbeats later', async () => {
      const first = await list()
      const etag = first.headers.get('etag') ?? ''
      await first.arrayBuffer()
      await new Promise(resolve => setTimeout(resolve, 3000))
      const again = await list({ 'if-none-match': etag })
      await again.arrayBuffer()
      return again.status === 304
    }, 30_000)
    const stamps = async (): Promise<string[]> => (await h1.get('/v1/databases/app')).body.instances.map((i: { status_updated_at: string }) => i.status_updated_at)
    const before = await stamps()
    expect(before.every(s => /^\d{4}-\d\d-\d\dT/.test(s))).toBe(true)
    await new Promise(resolve => setTimeout(resolve, 2500))
    expect(await stamps()).toEqual(before)
  })

  it('changes postgresql_conf: a reloadable setting without a restart, a restart-only one with a restart', async () => {
    const [h1] = hosts as [DaemonProcess]
    const before = await Promise.all(clients.map(async c => (await c.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t as string))
    const spec = (await h1.get('/v1/databases/app')).body.spec
    spec.postgresql_conf = { work_mem: '7MB' }
    const res = await h1.post('/v1/databases/app', { spec })
    expect(res.status).toBe(200)
    await waitTask(h1, 'app', res.body.task.task_id)
    for (const c of clients) expect((await c.query('SHOW work_mem')).rows[0].work_mem).toBe('7MB')
    const afterReload = await Promise.all(clients.map(async c => (await c.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t as string))
    expect(afterReload).toEqual(before)

    spec.postgresql_conf = { work_mem: '7MB', max_connections: 150 }
    const restart = await h1.post('/v1/databases/app', { spec })
    await waitTask(h1, 'app', restart.body.task.task_id)
    for (const c of clients.splice(0)) await c.end().catch(() => {})
    db = (await h1.get('/v1/databases/app')).body
    for (const node of ['n1', 'n2', 'n3']) clients.push(await connect(db, node))
    for (const c of clients) expect((await c.query('SHOW max_connections')).rows[0].max_connections).toBe('150')
    const afterRestart = await Promise.all(clients.map(async c => (await c.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t as string))
    afterRestart.forEach((t, i) => { expect(t).not.toBe(before[i]) })
  }, 200_000) // two tasks, the second a rolling restart of three nodes: waitTask's own bound (and its log) comes first

  it("changes a user's password on every node", async () => {
    const [, h2] = hosts as [DaemonProcess, DaemonProcess]
    const spec = (await h2.get('/v1/databases/app')).body.spec
    spec.database_users[0].password = 'new-password'
    const res = await h2.post('/v1/databases/app', { spec })
    await waitTask(h2, 'app', res.body.task.task_id)
    for (const node of ['n1', 'n2', 'n3']) {
      await expect(connect(db, node)).rejects.toThrow(/password authentication failed/)
      const c = await connect(db, node, 'app', 'new-password')
      await c.end()
    }
  })

  it('brings a kill -9ed postgres back', async () => {
    const { readFile } = await import('node:fs/promises')
    const n2 = db.instances.find(i => i.node_name === 'n2')
    const h2 = hosts[1] as DaemonProcess
    const pidFile = `${h2.options.dataDir}/instances/${n2?.id ?? ''}/pgdata/postmaster.pid`
    const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0])
    process.kill(pid, 'SIGKILL')
    await until('n2 back', async () => {
      const c = await connect(db, 'n2', 'app', 'new-password').catch(() => undefined)
      if (c === undefined) return false
      const rows = Number((await c.query('SELECT count(*) FROM items')).rows[0].count)
      await c.end()
      return rows === 3
    }, 30_000, 200)
  })

  it('adds a node while writers insert on n1 and n2: every node ends with exactly the same rows', { timeout: 180_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    for (const c of clients.splice(0)) await c.end().catch(() => {})
    const writers = [await connect(db, 'n1', 'app', 'new-password'), await connect(db, 'n2', 'app', 'new-password')]
    let writing = true
    const written: string[] = []
    const loops = writers.map(async (c, w) => {
      for (let i = 0; writing; i++) {
        const id = `w${w}-${i}`
        await c.query('INSERT INTO items VALUES ($1, $2)', [id, `n${w + 1}`])
        written.push(id)
        await new Promise(r => setTimeout(r, 5))
      }
    })
    await new Promise(r => setTimeout(r, 500))
    const spec = (await h1.get('/v1/databases/app')).body.spec
    spec.nodes.push({ name: 'n4', host_ids: ['host-1'] })
    const res = await h1.post('/v1/databases/app', { spec })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h1, 'app', res.body.task.task_id, 150_000)
    await new Promise(r => setTimeout(r, 500))
    writing = false
    await Promise.all(loops)
    for (const c of writers) await c.end()
    db = (await h1.get('/v1/databases/app')).body
    expect(db.instances.map(i => i.node_name)).toEqual(['n1', 'n2', 'n3', 'n4'])
    const expected = written.length + 3
    const nodeClients = await Promise.all(['n1', 'n2', 'n3', 'n4'].map(async n => await connect(db, n, 'app', 'new-password')))
    try {
      let counts: number[] = []
      await until('every node has every row', async () => {
        counts = await Promise.all(nodeClients.map(async c => Number((await c.query('SELECT count(*) FROM items')).rows[0].count)))
        return counts.every(n => n === expected) ? counts : undefined
      }, 30_000, 200).catch((err: Error) => { throw new Error(`${err.message}: expected ${expected} rows, nodes have ${counts.join(', ')}`) })
      const sets = await Promise.all(nodeClients.map(async c => (await c.query('SELECT id FROM items ORDER BY id')).rows.map(r => r.id as string).join(',')))
      expect(new Set(sets).size).toBe(1)
      // and n4 takes writes that reach the others
      await nodeClients[3]?.query("INSERT INTO items VALUES ('from-n4', 'n4')")
      await until('row from n4 everywhere', async () => {
        for (const c of nodeClients) if ((await c.query("SELECT 1 FROM items WHERE id = 'from-n4'")).rowCount !== 1) return false
        return true
      }, 20_000, 100)
    } finally {
      for (const c of nodeClients) await c.end()
    }
  })

  it('removes a node: its instance goes, and no peer keeps a subscription or slot for it', async () => {
    const [h1] = hosts as [DaemonProcess]
    const spec = (await h1.get('/v1/databases/app')).body.spec
    const n4 = db.instances.find(i => i.node_name === 'n4')
    spec.nodes = spec.nodes.filter((n: { name: string }) => n.name !== 'n4')
    const res = await h1.post('/v1/databases/app', { spec })
    await waitTask(h1, 'app', res.body.task.task_id)
    const { readdir } = await import('node:fs/promises')
    expect(await readdir(`${h1.options.dataDir}/instances`)).not.toContain(n4?.id)
    db = (await h1.get('/v1/databases/app')).body
    for (const node of ['n1', 'n2', 'n3']) {
      const info = db.instances.find(i => i.node_name === node)?.connection_info
      const c = new pg.Client({ host: info?.addresses[0], port: info?.port, user: 'pgmesh', password: await hosts[0]?.superuserPassword(), database: 'app' })
      await c.connect()
      await until(`no n4 slot on ${node}`, async () => (await c.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE '%n4%'")).rowCount === 0, 10_000)
      expect((await c.query("SELECT sub_name FROM pglogical.subscription WHERE sub_name LIKE '%n4%'")).rowCount).toBe(0)
      await c.end()
    }
  })

  it('finishes a create after its daemon is kill -9ed in the middle of it', async () => {
    const [, h2] = hosts as [DaemonProcess, DaemonProcess]
    const res = await h2.post('/v1/databases', { id: 'crashy', spec: { database_name: 'crashy', nodes: [{ name: 'n1', host_ids: ['host-2'] }] } })
    expect(res.status).toBe(200)
    await new Promise(r => setTimeout(r, 300))
    await h2.stop('SIGKILL')
    // Meanwhile the other hosts show the database with an instance on host-2 as degraded.
    const [h1] = hosts as [DaemonProcess]
    await until('app degraded while host-2 is unreachable', async () => (await h1.get('/v1/databases/app')).body.state === 'degraded', 15_000, 200)
    await h2.start()
    await waitTask(h2, 'crashy', res.body.task.task_id)
    await until('app available again', async () => (await h1.get('/v1/databases/app')).body.state === 'available', 15_000, 200)
    const del = await h2.request('DELETE', '/v1/databases/crashy')
    await waitTask(h2, 'crashy', del.body.task.task_id)
  })

  it('cancels a create: the task ends canceled and the database failed; resubmitting the spec finishes it', async () => {
    const [, h2, h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const spec = {
      database_name: 'later',
      database_users: [{ username: 'admin', password: 'later-password', db_owner: true, attributes: ['LOGIN'] }],
      nodes: [{ name: 'n1', host_ids: ['host-2'] }, { name: 'n2', host_ids: ['host-3'] }]
    }
    const created = await h2.post('/v1/databases', { id: 'later', spec })
    expect(created.status).toBe(200)
    const cancel = await h3.get(`/v1/databases/later/tasks/${created.body.task.task_id as string}/cancel`)
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200)
    expect(cancel.body.status).toBe('canceling')
    // The host the create came from closes the task once the hosts have paused; every host shows it.
    const canceled = await until('create canceled', async () => {
      const t = (await h3.get(`/v1/databases/later/tasks/${created.body.task.task_id as string}`)).body
      return t.status === 'canceled' ? t : undefined
    }, 30_000, 100)
    expect(canceled.completed_at).toBeDefined()
    await until('database failed after the cancel', async () => (await h3.get('/v1/databases/later')).body.state === 'failed', 15_000, 100)
    // A canceled task cannot be canceled again.
    expect((await h2.get(`/v1/databases/later/tasks/${created.body.task.task_id as string}/cancel`)).status).toBe(400)

    // Retry: the same spec sent again as an update runs to the end.
    const retry = await h3.post('/v1/databases/later', { spec })
    expect(retry.status, JSON.stringify(retry.body)).toBe(200)
    await waitTask(h3, 'later', retry.body.task.task_id)
    const later = (await h2.get('/v1/databases/later')).body as Db
    expect(later.state).toBe('available')
    const [n1, n2] = [await connect(later, 'n1', 'later', 'later-password'), await connect(later, 'n2', 'later', 'later-password')]
    try {
      const info = later.instances.find(i => i.node_name === 'n1')?.connection_info
      const admin = new pg.Client({ host: info?.addresses[0], port: info?.port, user: 'pgmesh', password: await hosts[0]?.superuserPassword(), database: 'later' })
      await admin.connect()
      await admin.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.t (id int PRIMARY KEY); GRANT ALL ON public.t TO admin', '{ddl_sql}')")
      await admin.end()
      await until('table on n2', async () => (await n2.query("SELECT to_regclass('public.t') AS t")).rows[0].t !== null, 15_000, 100)
      await n1.query('INSERT INTO t VALUES (1)')
      await until('row from n1 on n2', async () => (await n2.query('SELECT 1 FROM t WHERE id = 1')).rowCount === 1, 15_000, 100)
    } finally {
      await n1.end()
      await n2.end()
    }
    const del = await h2.request('DELETE', '/v1/databases/later')
    await waitTask(h2, 'later', del.body.task.task_id)
  })

  it('deletes it: no instance, process or directory is left on any host', async () => {
    const [h1, h2] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    for (const c of clients.splice(0)) await c.end().catch(() => {})
    const res = await h2.request('DELETE', '/v1/databases/app')
    expect(res.status).toBe(200)
    await waitTask(h2, 'app', res.body.task.task_id)
    expect((await h1.get('/v1/databases/app')).status).toBe(404)
    const { readdir } = await import('node:fs/promises')
    for (const h of hosts) expect(await readdir(`${h.options.dataDir}/instances`).catch(() => [])).toEqual([])
    const { execFileSync } = await import('node:child_process')
    const left = (() => { try { return execFileSync('pgrep', ['-af', `${cluster?.root ?? ''}/host-`]).toString() } catch { return '' } })()
    expect(left.split('\n').filter(l => l.includes('postgres'))).toEqual([])
  })
})

describe('a spec edited on both sides of a partition', () => {
  let split: TestCluster

  afterAll(async () => { await split?.destroy() })

  it('merges, and the instances on both sides follow the merged spec', { timeout: 180_000 }, async () => {
    split = await TestCluster.create('split')
    cluster = split
    const [h1, h2] = await split.initAndJoin(2) as [DaemonProcess, DaemonProcess]
    const res = await h1.post('/v1/databases', {
      id: 'split',
      spec: { database_name: 'split', postgresql_conf: { work_mem: '4MB' }, nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }] }
    })
    expect(res.status).toBe(200)
    await waitTask(h1, 'split', res.body.task.task_id)
    const edit = async (d: DaemonProcess, key: string, value: string): Promise<void> => {
      const spec = (await d.get('/v1/databases/split')).body.spec
      spec.postgresql_conf[key] = value
      expect((await d.post('/v1/databases/split', { spec })).status).toBe(200)
    }
    // Apart: host-2's daemon is down while host-1 edits, then host-1's while host-2 edits (their Postgres keep running).
    await h2.stop()
    await edit(h1, 'work_mem', '9MB')
    await h1.stop()
    await h2.start()
    await edit(h2, 'statement_timeout', '42s')
    await h1.start()
    const setting = async (node: string, name: string): Promise<string> => {
      const db: Db = (await h1.get('/v1/databases/split')).body
      const info = db.instances.find(i => i.node_name === node)?.connection_info
      const c = new pg.Client({ host: info?.addresses[0], port: info?.port, user: 'pgmesh', password: await h1.superuserPassword(), database: 'split' })
      c.on('error', () => {})
      await c.connect()
      try { return (await c.query(`SHOW ${name}`)).rows[0][name] as string } finally { await c.end() }
    }
    await until('both instances follow the merged spec', async () => {
      for (const node of ['n1', 'n2']) {
        if (await setting(node, 'work_mem') !== '9MB' || await setting(node, 'statement_timeout') !== '42s') return false
      }
      return true
    }, 60_000, 500)
    const merged = (await h2.get('/v1/databases/split')).body.spec.postgresql_conf
    expect(merged).toEqual({ work_mem: '9MB', statement_timeout: '42s' })
  })
})
