// Finding 5 of issue 16: instances admitted the control plane's superuser `pgmesh` from every cluster host's address
// with `trust`, so any OS user on any host was a Postgres superuser without a password. Now pgmesh over TCP needs the
// cluster-wide password derived from the data key; replicas stream, clone and pglogical subscribes through a
// password file, with no password in any conninfo, catalog or process argument.
import { execFile } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'

const run = promisify(execFile)
let cluster: TestCluster | undefined
let hosts: DaemonProcess[]

interface Instance { id: string, node_name: string, host_id: string, state: string, postgres?: { role?: string }, connection_info?: { addresses: string[], port: number } }

async function waitTask (d: DaemonProcess, databaseId: string, taskId: string): Promise<void> {
  await until(`task ${taskId}`, async () => {
    const task = (await d.get(`/v1/databases/${databaseId}/tasks/${taskId}`)).body
    if (task.status === 'failed' || task.status === 'canceled') throw new Error(`task ${task.status as string}: ${task.error as string}\n${cluster?.problems() ?? ''}`)
    return task.status === 'completed' ? true : undefined
  }, 180_000, 250)
}

async function asSuperuser<T> (instance: Instance | undefined, password: string | undefined, work: (c: pg.Client) => Promise<T>): Promise<T> {
  const info = instance?.connection_info
  const client = new pg.Client({ host: info?.addresses[0], port: info?.port, user: 'pgmesh', database: 'app', ...(password === undefined ? {} : { password }), connectionTimeoutMillis: 5000 })
  client.on('error', () => {})
  await client.connect()
  try { return await work(client) } finally { await client.end().catch(() => undefined) }
}

describe('the control plane superuser over TCP', () => {
  let instances: Instance[]

  beforeAll(async () => {
    cluster = await TestCluster.create('superuser')
    hosts = await cluster.initAndJoin(2)
    const [h1] = hosts as [DaemonProcess]
    const res = await h1.post('/v1/databases', {
      id: 'app',
      spec: {
        database_name: 'app',
        database_users: [{ username: 'admin', password: 'admin-password', db_owner: true, attributes: ['LOGIN'] }],
        // n1: a primary and a streaming replica (cloned with pg_basebackup); n2: a pglogical peer on another host.
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-2'] }]
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h1, 'app', res.body.task.task_id)
    instances = (await h1.get('/v1/databases/app')).body.instances
  }, 240_000)

  afterAll(async () => {
    await cluster?.destroy()
  })

  it('refuses `psql host=<peer addr> user=pgmesh` without a password', async () => {
    for (const instance of instances) {
      const info = instance.connection_info
      const { PGPASSWORD: _p, PGPASSFILE: _f, ...env } = process.env
      const attempt = run('psql', [`host=${info?.addresses[0] ?? ''} port=${info?.port ?? 0} user=pgmesh dbname=postgres`, '-w', '-c', 'SELECT 1'], { env: { ...env, HOME: '/nonexistent' } })
      await expect(attempt, instance.id).rejects.toThrow(/password/)
    }
  })

  it('admits it with the password every host derives from the data key, the same on both hosts', async () => {
    const [h1, h2] = hosts as [DaemonProcess, DaemonProcess]
    const password = await h1.superuserPassword()
    expect(await h2.superuserPassword()).toBe(password)
    for (const instance of instances) {
      expect(await asSuperuser(instance, password, async c => (await c.query('SELECT current_user AS u')).rows[0]?.u)).toBe('pgmesh')
    }
  })

  it('streams the replica, and replicates between nodes, with no password in any conninfo, catalog or argument', async () => {
    const [h1] = hosts as [DaemonProcess]
    const password = await h1.superuserPassword()
    const primary = instances.find(i => i.node_name === 'n1' && i.host_id === 'host-1')
    const replica = instances.find(i => i.node_name === 'n1' && i.host_id === 'host-2')
    const n2 = instances.find(i => i.node_name === 'n2')
    expect(replica?.postgres?.role).toBe('replica')
    await asSuperuser(primary, password, async c => {
      await c.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.t (id int PRIMARY KEY)', '{ddl_sql}')")
      await c.query('INSERT INTO t VALUES (1)')
    })
    await until('the row on the replica and on n2', async () => {
      const counts = await Promise.all([replica, n2].map(async i => await asSuperuser(i, password, async c =>
        (await c.query("SELECT count(*)::int AS n FROM t").catch(() => ({ rows: [{ n: 0 }] }))).rows[0]?.n as number)))
      return counts.every(n => n === 1) ? true : undefined
    }, 30_000, 200)
    const conninfo = await asSuperuser(replica, password, async c => (await c.query("SELECT status, conninfo FROM pg_stat_wal_receiver")).rows[0])
    expect(conninfo?.status).toBe('streaming')
    const dsns = await asSuperuser(n2, password, async c =>
      (await c.query('SELECT if_dsn FROM pglogical.node_interface')).rows.map(r => r.if_dsn as string))
    expect(dsns.length).toBeGreaterThan(0)
    const settings = await asSuperuser(replica, password, async c => (await c.query("SELECT current_setting('primary_conninfo') AS v")).rows[0]?.v as string)
    for (const text of [...dsns, settings, JSON.stringify(conninfo)]) expect(text).not.toContain(password)
    const { stdout } = await run('ps', ['-eo', 'args'])
    expect(stdout).not.toContain(password)
  })

  it('keeps the password file 0600, owned by the postgres OS user', async () => {
    for (const instance of instances) {
      const dataDir = (hosts.find(h => h.hostId === instance.host_id) as DaemonProcess).options.dataDir
      const file = join(dataDir, 'instances', instance.id, 'pgpass')
      const info = await stat(file)
      expect(info.mode & 0o777).toBe(0o600)
      const { stdout } = await run('id', ['-u', 'postgres'])
      expect(info.uid).toBe(Number(stdout.trim()))
      expect(await readFile(file, 'utf8')).toMatch(/^\*:\*:\*:pgmesh:[A-Za-z0-9_-]+\n$/)
    }
  })
})
