// In-place restores with pgBackRest made real: daemons as processes, real Postgres, a posix repository in the test's
// temp dir. Point-in-time restore of one node to a timestamp between two batches; a 3-node database restored in place
// from one node's backup, replicating both ways afterwards with identical rows everywhere; bad restore configs
// refused; the repository key kept out of responses, task logs, daemon logs and process arguments.
import { execFile } from 'node:child_process'
import { chown, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli } from './helpers/cli.js'
import { type DaemonProcess, TestCluster, queryInstance, until } from './helpers/cluster.js'
import { ok } from './helpers/specs.js'

const exec = promisify(execFile)
const PASSWORD = 'rs-password'
/** Write-only: must never come back in a response, a log, a task log or a process's arguments. */
const REPO_KEY = 'AKIA-PGMESH-RESTORE-SECRET-4b1d0a'

let cluster: TestCluster | undefined

interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number } }

async function waitTask (d: DaemonProcess, db: string, taskId: string, timeoutMs = 120_000): Promise<any> {
  const task = await until(`task ${taskId} to finish`, async () => {
    const t = (await d.get(`/v1/databases/${db}/tasks/${taskId}`)).body
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, timeoutMs, 250)
  if (task.status !== 'completed') throw new Error(`task ${task.status as string}: ${task.error as string}\n${await taskLog(d, db, taskId)}\n${cluster?.problems() ?? ''}`)
  return task
}

async function taskLog (d: DaemonProcess, db: string, taskId: string): Promise<string> {
  const log = (await d.get(`/v1/databases/${db}/tasks/${taskId}/log?limit=1000`)).body
  return (log.entries as Array<{ message: string, fields: { host_id: string } }>).map(e => `${e.fields.host_id} ${e.message}`).join('\n')
}

async function sql<T = any> (d: DaemonProcess, db: string, node: string, text: string): Promise<T[]> {
  return await queryInstance(d, db, i => i.node_name === node, { user: 'admin', password: PASSWORD }, text)
}

/** On one host's instance (a node with a replica has two). */
async function sqlOn<T = any> (d: DaemonProcess, db: string, hostId: string, text: string): Promise<T[]> {
  return await queryInstance(d, db, i => i.host_id === hostId, { user: 'admin', password: PASSWORD }, text)
}


async function ids (d: DaemonProcess, db: string, node: string): Promise<number[]> {
  return (await sql<{ id: number }>(d, db, node, 'SELECT id FROM items ORDER BY id')).map(r => r.id)
}

function range (from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i)
}

async function backup (d: DaemonProcess, db: string, node: string, type: 'full' | 'incr'): Promise<string> {
  const res = await ok(d.post(`/v1/databases/${db}/nodes/${node}/backups`, { type }), `${type} backup of ${node}`)
  await waitTask(d, db, res.task.task_id as string)
  return await taskLog(d, db, res.task.task_id as string)
}

function spec (name: string, nodes: Array<{ name: string, host_ids: string[] }>, repo: string): Record<string, unknown> {
  return {
    database_name: name,
    database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
    nodes,
    backup_config: { repositories: [{ id: 'local', type: 'posix', base_path: repo, s3_key: REPO_KEY }] }
  }
}

function restoreConfig (db: string, node: string, repo: string, options?: Record<string, string>): Record<string, unknown> {
  return {
    source_database_id: db,
    source_node_name: node,
    source_database_name: db,
    repository: { id: 'local', type: 'posix', base_path: repo, s3_key: REPO_KEY },
    ...(options === undefined ? {} : { restore_options: options })
  }
}

describe('in-place restores with pgBackRest', () => {
  let h1: DaemonProcess
  let h2: DaemonProcess
  let h3: DaemonProcess
  let repo: string

  beforeAll(async () => {
    cluster = await TestCluster.create('restore')
    ;[h1, h2, h3] = await cluster.initAndJoin(3) as [DaemonProcess, DaemonProcess, DaemonProcess]
    // The repository is the Postgres OS user's to write, as a mounted backup volume would be.
    repo = join(cluster.root, 'repo')
    await mkdir(repo, { mode: 0o700 })
    const { stdout } = await exec('id', ['-u', 'postgres'])
    await chown(repo, Number(stdout.trim()), Number(stdout.trim()))
  }, 60_000)

  afterAll(async () => { await cluster?.destroy() })

  it('restores a node to a point in time between two batches: exactly the rows written before it', async () => {
    const created = await ok(h1.post('/v1/databases', { id: 'pit', spec: spec('pit', [{ name: 'n1', host_ids: ['host-1'] }], repo) }), 'create pit')
    await waitTask(h1, 'pit', created.task.task_id as string)
    await sql(h1, 'pit', 'n1', 'CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100)')
    const fullLog = await backup(h1, 'pit', 'n1', 'full')
    expect(fullLog).toMatch(/new backup label = \d{8}-\d{6}F/)
    await sql(h1, 'pit', 'n1', 'INSERT INTO items SELECT generate_series(101, 200)')
    expect(await backup(h1, 'pit', 'n1', 'incr')).toMatch(/new backup label = \d{8}-\d{6}F_\d{8}-\d{6}I/)
    // The target: after the second batch's commit, before the third's (the server's clock, a second apart each way).
    await new Promise(resolve => setTimeout(resolve, 1100))
    const at = (await sql<{ at: string }>(h1, 'pit', 'n1', "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at"))[0]?.at ?? ''
    await new Promise(resolve => setTimeout(resolve, 1100))
    await sql(h1, 'pit', 'n1', 'INSERT INTO items SELECT generate_series(201, 300)')
    // A backup after the third batch archives the WAL that holds it, so recovery can stop right before it.
    await backup(h1, 'pit', 'n1', 'incr')
    expect(await ids(h1, 'pit', 'n1')).toEqual(range(1, 300))

    const res = await h2.post('/v1/databases/pit/restore', { restore_config: restoreConfig('pit', 'n1', repo, { type: 'time', target: at }) })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    expect(JSON.stringify(res.body)).not.toContain(REPO_KEY)
    expect(res.body.task.type).toBe('restore')
    expect(res.body.database.state).toBe('restoring')
    expect(res.body.node_tasks).toHaveLength(1)
    const [nodeTask] = res.body.node_tasks as Array<{ task_id: string, type: string, parent_id: string, node_name: string }>
    expect([nodeTask?.type, nodeTask?.parent_id, nodeTask?.node_name]).toEqual(['node_restore', res.body.task.task_id, 'n1'])
    // Asked of host-2, run by host-1 (the node's primary's host).
    const done = await waitTask(h2, 'pit', nodeTask?.task_id ?? '', 240_000)
    expect(done.host_id).toBe('host-1')
    await waitTask(h2, 'pit', res.body.task.task_id as string, 120_000)
    const log = await taskLog(h2, 'pit', nodeTask?.task_id ?? '')
    expect(log).toMatch(/host-1 .*restore command begin/)
    expect(log).toMatch(/host-1 .*restore command end: completed successfully/)
    expect(log).not.toContain(REPO_KEY)

    expect(await ids(h1, 'pit', 'n1')).toEqual(range(1, 200))
    const db = (await h1.get('/v1/databases/pit')).body
    expect(db.state).toBe('available')
    // As the anchor: the restored node's backup_config is gone (its WAL must not go on into the old repository).
    expect(db.spec.backup_config).toBeUndefined()
    expect(db.spec.nodes[0].backup_config).toBeUndefined()
    const [{ archive_command: archive }] = await sql(h1, 'pit', 'n1', 'SHOW archive_command')
    expect(archive).toBe('/bin/true')
    // The restored server takes writes, and nothing of the recovery is left in its settings.
    await sql(h1, 'pit', 'n1', 'INSERT INTO items VALUES (1000)')
    const [{ restore_command: restoreCommand }] = await sql(h1, 'pit', 'n1', 'SHOW restore_command')
    expect(restoreCommand).toBe('')
  }, 600_000)

  it('runs a node restore again from the start when its daemon restarts in the middle', async () => {
    // The latest backup of pit's n1 holds rows 1-300; 1000 was written after it.
    const res = await ok(h2.post('/v1/databases/pit/restore', { restore_config: restoreConfig('pit', 'n1', repo, { type: 'immediate' }) }), 'restore pit again')
    const nodeTask = (res.node_tasks as Array<{ task_id: string }>)[0]?.task_id ?? ''
    await until('pgBackRest restoring on host-1', async () => /restore command begin/.test(await taskLog(h2, 'pit', nodeTask)), 60_000, 20)
    await h1.stop('SIGTERM')
    await h1.start()
    await waitTask(h2, 'pit', nodeTask, 240_000)
    await waitTask(h2, 'pit', res.task.task_id as string, 120_000)
    const log = await taskLog(h2, 'pit', nodeTask)
    expect(log.match(/restore command begin/g)?.length ?? 0).toBeGreaterThanOrEqual(2)
    expect(log).toMatch(/restore command end: completed successfully/)
    expect(await ids(h1, 'pit', 'n1')).toEqual(range(1, 300))
  }, 600_000)

  it('restores a 3-node database in place from one backup: identical rows, replicating both ways afterwards', async () => {
    const nodes = [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }]
    const created = await ok(h1.post('/v1/databases', { id: 'mm', spec: spec('mm', nodes, repo) }), 'create mm')
    await waitTask(h1, 'mm', created.task.task_id as string, 180_000)
    await sql(h1, 'mm', 'n1', 'CREATE TABLE items (id int PRIMARY KEY, node text)')
    await until('the table on every node', async () => {
      for (const n of ['n2', 'n3']) if ((await sql(h1, 'mm', n, "SELECT 1 FROM pg_tables WHERE tablename = 'items'")).length === 0) return false
      return true
    }, 30_000, 250)
    await sql(h1, 'mm', 'n1', "INSERT INTO items SELECT g, 'n1' FROM generate_series(1, 50) g")
    await sql(h1, 'mm', 'n2', "INSERT INTO items SELECT g, 'n2' FROM generate_series(51, 100) g")
    await until('100 rows on every node', async () => {
      for (const n of ['n1', 'n2', 'n3']) if ((await ids(h1, 'mm', n)).length !== 100) return false
      return true
    }, 30_000, 250)
    await backup(h1, 'mm', 'n1', 'full')
    // Rows written after the backup, on two nodes: the restore takes every node back to before them.
    await sql(h1, 'mm', 'n2', "INSERT INTO items SELECT g, 'n2' FROM generate_series(101, 120) g")
    await sql(h1, 'mm', 'n3', "INSERT INTO items SELECT g, 'n3' FROM generate_series(121, 140) g")

    const res = await h3.post('/v1/databases/mm/restore', { restore_config: restoreConfig('mm', 'n1', repo, { type: 'immediate' }) })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    expect((res.body.node_tasks as Array<{ node_name: string }>).map(t => t.node_name).sort()).toEqual(['n1', 'n2', 'n3'])
    for (const t of res.body.node_tasks as Array<{ task_id: string }>) await waitTask(h3, 'mm', t.task_id, 300_000)
    await waitTask(h3, 'mm', res.body.task.task_id as string, 180_000)

    for (const n of ['n1', 'n2', 'n3']) expect(await ids(h1, 'mm', n), n).toEqual(range(1, 100))
    // The task ends only once every node subscribes to every other again: a write made before a subscription exists
    // never reaches that subscriber.
    for (const n of ['n1', 'n2', 'n3']) {
      const subscriptions = await sql<{ provider_node: string }>(h1, 'mm', n, 'SELECT provider_node FROM pglogical.show_subscription_status()')
      expect(subscriptions.map(s => s.provider_node).sort(), n).toEqual(['n1', 'n2', 'n3'].filter(other => other !== n))
    }
    // Replication rebuilt in every direction: each node's new rows reach every other node, once.
    await sql(h1, 'mm', 'n1', "INSERT INTO items SELECT g, 'n1' FROM generate_series(201, 210) g")
    await sql(h1, 'mm', 'n2', "INSERT INTO items SELECT g, 'n2' FROM generate_series(211, 220) g")
    await sql(h1, 'mm', 'n3', "INSERT INTO items SELECT g, 'n3' FROM generate_series(221, 230) g")
    const expected = [...range(1, 100), ...range(201, 230)]
    await until('every node with the same 130 rows', async () => {
      for (const n of ['n1', 'n2', 'n3']) if (JSON.stringify(await ids(h1, 'mm', n)) !== JSON.stringify(expected)) return false
      return true
    }, 60_000, 250)
    const local = await sql<{ name: string }>(h1, 'mm', 'n2', 'SELECT n.node_name::text AS name FROM pglogical.local_node l JOIN pglogical.node n USING (node_id)')
    expect(local.map(r => r.name)).toEqual(['n2'])
  }, 900_000)

  it('creates a database from a backup on another host, renamed, and adds a node from that backup on a third', async () => {
    // mm's n1 backup (rows 1-100, database mm), restored as database clone on host-2.
    const source = { ...restoreConfig('mm', 'n1', repo, { type: 'immediate' }) }
    const body = { id: 'clone', spec: { ...spec('clone', [{ name: 'n1', host_ids: ['host-2'] }], repo), backup_config: undefined, restore_config: source } }
    const created = await ok(h1.post('/v1/databases', body), 'create clone')
    expect(JSON.stringify(created)).not.toContain(REPO_KEY)
    await waitTask(h1, 'clone', created.task.task_id as string, 240_000)
    expect(await ids(h1, 'clone', 'n1')).toEqual(range(1, 100))
    const databases = await sql<{ datname: string }>(h1, 'clone', 'n1', "SELECT datname FROM pg_database WHERE datname IN ('mm', 'clone')")
    expect(databases.map(d => d.datname)).toEqual(['clone'])
    const local = await sql<{ name: string }>(h1, 'clone', 'n1', 'SELECT n.node_name::text AS name FROM pglogical.local_node l JOIN pglogical.node n USING (node_id)')
    expect(local.map(r => r.name)).toEqual(['n1'])
    expect(await sql(h1, 'clone', 'n1', 'SELECT sub_name FROM pglogical.subscription')).toEqual([])

    // n2 on host-3 from the same backup: no copy from n1, subscriptions both ways from then on.
    const current = (await h1.get('/v1/databases/clone')).body.spec as Record<string, any>
    current.nodes.push({ name: 'n2', host_ids: ['host-3'], restore_config: source })
    const updated = await ok(h1.post('/v1/databases/clone', { spec: current }), 'add n2 from a backup')
    await waitTask(h1, 'clone', updated.task.task_id as string, 240_000)
    expect(await ids(h1, 'clone', 'n2')).toEqual(range(1, 100))
    await sql(h1, 'clone', 'n1', "INSERT INTO items SELECT g, 'n1' FROM generate_series(301, 305) g")
    await sql(h1, 'clone', 'n2', "INSERT INTO items SELECT g, 'n2' FROM generate_series(306, 310) g")
    const expected = [...range(1, 100), ...range(301, 310)]
    await until('both nodes with the same 110 rows', async () => {
      for (const n of ['n1', 'n2']) if (JSON.stringify(await ids(h1, 'clone', n)) !== JSON.stringify(expected)) return false
      return true
    }, 60_000, 250)
  }, 900_000)

  it('restores a node with a replica with the CLI: the replica is cloned afresh from the restored primary', async () => {
    const created = await ok(h1.post('/v1/databases', { id: 'rep', spec: spec('rep', [{ name: 'n1', host_ids: ['host-1', 'host-2'] }], repo) }), 'create rep')
    await waitTask(h1, 'rep', created.task.task_id as string, 180_000)
    await sqlOn(h1, 'rep', 'host-1', 'CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 50)')
    await backup(h1, 'rep', 'n1', 'full')
    await sqlOn(h1, 'rep', 'host-1', 'INSERT INTO items SELECT generate_series(51, 80)')
    const replicaBefore = (await sqlOn<{ ts: string }>(h1, 'rep', 'host-2', "SELECT pg_postmaster_start_time()::text AS ts"))[0]?.ts

    const res = await cli(['db', 'restore', 'rep', '--repo', `posix:${repo}`, '--repo-id', 'local', '--option', 'type=immediate', '--wait', '--server', h2.url], { timeoutMs: 300_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    expect(res.stdout + res.stderr).toMatch(/Task \S+ completed after/)
    const instances = (await h1.get('/v1/databases/rep')).body.instances as Array<Instance & { postgres?: { role?: string } }>
    expect(instances.map(i => [i.host_id, i.state, i.postgres?.role]).sort()).toEqual([['host-1', 'available', 'primary'], ['host-2', 'available', 'replica']])
    const ids = async (host: string): Promise<number[]> => (await sqlOn<{ id: number }>(h1, 'rep', host, 'SELECT id FROM items ORDER BY id')).map(r => r.id)
    expect(await ids('host-1')).toEqual(range(1, 50))
    expect(await ids('host-2')).toEqual(range(1, 50))
    // A new server on host-2 (cloned again), streaming what the restored primary takes now.
    expect((await sqlOn<{ ts: string }>(h1, 'rep', 'host-2', "SELECT pg_postmaster_start_time()::text AS ts"))[0]?.ts).not.toBe(replicaBefore)
    await sqlOn(h1, 'rep', 'host-1', 'INSERT INTO items VALUES (1000)')
    await until('the replica streaming from the restored primary', async () => (await ids('host-2')).includes(1000), 30_000, 250)
  }, 600_000)

  it('refuses bad restore configs with path-prefixed invalid_input', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ restore_config: { ...restoreConfig('pit', 'n1', repo), repository: { type: 'posix', base_path: 'relative' } } }, 'restore_config.repository.base_path: base_path must be absolute for posix repositories'],
      [{ restore_config: restoreConfig('pit', 'n1', repo, { 'cmd-ssh': '/bin/sh' }) }, "restore_config.restore_options[cmd-ssh]: option 'cmd-ssh' runs a command and is not allowed"],
      [{ restore_config: restoreConfig('pit', 'n1', repo, { 'pg1-path': '/etc' }) }, "restore_config.restore_options[pg1-path]: option 'pg1-path' names a server and is not allowed"],
      [{ restore_config: restoreConfig('pit', 'n1', repo), target_nodes: ['n9'] }, 'target_nodes[0]: node n9 not found'],
      [{ restore_config: { ...restoreConfig('pit', 'n1', repo), repository: { type: 's3' } } }, 'restore_config.repository.s3_bucket: s3_bucket is required for s3 repositories']
    ]
    for (const [body, message] of cases) {
      const res = await h1.post('/v1/databases/pit/restore', body)
      expect(res.status, JSON.stringify(res.body)).toBe(400)
      expect(res.body.name).toBe('invalid_input')
      expect(res.body.message).toContain(message)
    }
    const missing = await h1.post('/v1/databases/pit/restore', {})
    expect([missing.status, missing.body.name]).toEqual([400, 'invalid_input'])
    expect(missing.body.message).toMatch(/restore_config/)
    const unknown = await h1.post('/v1/databases/nope/restore', { restore_config: restoreConfig('pit', 'n1', repo) })
    expect([unknown.status, unknown.body.message]).toEqual([404, 'database not found'])
  })

  it('keeps the repository key out of responses, task logs, daemon logs and process arguments', async () => {
    for (const db of ['pit', 'mm', 'clone', 'rep']) {
      for (const path of [`/v1/databases/${db}`, '/v1/databases', `/v1/databases/${db}/tasks?limit=100`]) {
        expect(JSON.stringify((await h1.get(path)).body)).not.toContain(REPO_KEY)
      }
      const tasks = (await h1.get(`/v1/databases/${db}/tasks?limit=100`)).body.tasks as Array<{ task_id: string }>
      for (const t of tasks) expect(await taskLog(h1, db, t.task_id)).not.toContain(REPO_KEY)
    }
    for (const d of [h1, h2, h3]) expect(d.output).not.toContain(REPO_KEY)
    const { stdout } = await exec('ps', ['-eo', 'args'])
    expect(stdout).not.toContain(REPO_KEY)
  })
})
