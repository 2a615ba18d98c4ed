// A host dies for good (daemon and Postgres killed) and is force-removed: every spec goes without it (a replica
// dropped, a node that lived only there removed, a primary there failed over first), the databases end available on
// the remaining hosts with replication intact both ways, and nothing names the host any more. A delete with force
// finishes while a host is down, whose leftovers go when it returns; the removed host, returning, removes its own.
// Daemons as processes, real Postgres (process orchestrator).
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, killProcessGroupsOf, TestCluster, until, untilEveryHostKnowsEvery } from './helpers/cluster.js'

const PASSWORD = 'dead-host-password'

interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { role?: string } }
interface Db { state: string, spec: { nodes: Array<{ name: string, host_ids: string[] }> }, instances: Instance[] }

let cluster: TestCluster | undefined
let h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess
let joinedAt = 0

async function waitTask (d: DaemonProcess, path: string, timeoutMs = 120_000): Promise<any> {
  const task = await until(`task ${path} to finish`, async () => {
    const t = (await d.get(path)).body
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, timeoutMs, 250)
  if (task.status !== 'completed') {
    const log = (await d.get(`${path}/${path.startsWith('/v1/hosts') ? 'logs' : 'log'}`)).body
    throw new Error(`${path} ${task.status as string}: ${task.error as string}\n${JSON.stringify(log.entries)}\n${cluster?.problems() ?? ''}`)
  }
  return task
}

async function createDatabase (id: string, nodes: Array<{ name: string, host_ids: string[] }>): Promise<string> {
  const res = await h1.post('/v1/databases', {
    id, spec: { database_name: id, database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }], nodes }
  })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
  return res.body.task.task_id as string
}

async function database (d: DaemonProcess, id: string): Promise<Db> {
  return (await d.get<Db>(`/v1/databases/${id}`)).body
}

async function connect (db: Db, node: string, name: string): Promise<pg.Client> {
  const info = db.instances.find(i => i.node_name === node && i.postgres?.role === 'primary')?.connection_info
  if (info === undefined) throw new Error(`no primary of ${node}`)
  const client = new pg.Client({ host: info.addresses[0], port: info.port, user: 'admin', password: PASSWORD, database: name, connectionTimeoutMillis: 3000, statement_timeout: 10_000 })
  client.on('error', () => {})
  await client.connect()
  return client
}

/** Kills a host for good: its daemon and every Postgres of its data dir. */
async function kill (d: DaemonProcess): Promise<void> {
  await d.stop('SIGKILL')
  await killProcessGroupsOf(`${d.options.dataDir}/`)
}

function instanceDirs (d: DaemonProcess): string[] {
  const dir = join(d.options.dataDir, 'instances')
  return existsSync(dir) ? readdirSync(dir).sort() : []
}

/**
 * Processes whose command line names the host's instances (a postmaster's `-D`), as `pid command` lines. Not the
 * pgrep of another poll running at the same moment: pgrep leaves out only itself.
 */
async function processesIn (d: DaemonProcess): Promise<string> {
  const out = await promisify(execFile)('pgrep', ['-af', `${d.options.dataDir}/instances`]).catch(() => ({ stdout: '' }))
  return out.stdout.split('\n').filter(line => line.trim() !== '' && line.split(' ')[1] !== 'pgrep').join('\n')
}

async function postgresRunningIn (d: DaemonProcess): Promise<boolean> {
  return (await processesIn(d)) !== ''
}

beforeAll(async () => {
  cluster = await TestCluster.create('dead-host')
  ;[h1, h2, h3] = await cluster.initAndJoin(3) as [DaemonProcess, DaemonProcess, DaemonProcess]
  await untilEveryHostKnowsEvery([h1, h2, h3])
  joinedAt = Date.now()
}, 60_000)

afterEach((context) => {
  if (context.task.result?.state !== 'fail') return
  console.log(cluster?.problems())
  if (process.env.DEAD_LOG_DIR !== undefined) for (const d of [h1, h2, h3]) writeFileSync(`${process.env.DEAD_LOG_DIR}/${d.hostId}.log`, d.output)
})

afterAll(async () => {
  await cluster?.destroy()
})

describe('a host dead for good', () => {
  it('is force-removed: its databases end available on the remaining hosts, replicating both ways, and nothing names it', async () => {
    // `dead`: n1's replica and all of n3 are on host-3. `moved`: its primary is there, its replica on host-2.
    const tasks = await Promise.all([
      createDatabase('dead', [{ name: 'n1', host_ids: ['host-1', 'host-3'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }]),
      createDatabase('moved', [{ name: 'n1', host_ids: ['host-3', 'host-2'] }])
    ])
    await waitTask(h1, `/v1/databases/dead/tasks/${tasks[0]}`, 180_000)
    await waitTask(h1, `/v1/databases/moved/tasks/${tasks[1]}`, 180_000)

    // Only a replica its primary counted as holding every acknowledged commit may take over (packages/lease).
    await until('moved/n1\'s replica to be eligible to take over', () => h3.output.split('\n')
      .some(l => l.includes('"node":"moved/n1"') && l.includes('replicas eligible to take over')), 60_000, 250)
    await kill(h3)
    const started = Date.now()
    const res = await h1.request('DELETE', '/v1/hosts/host-3?force=true')
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    console.log(`DELETE /v1/hosts/host-3?force=true answered after ${Date.now() - started} ms (waits for moved/n1 to fail over)`)
    const { task, update_database_tasks: children } = res.body as { task: { task_id: string, type: string }, update_database_tasks: Array<{ task_id: string, database_id: string, type: string, parent_id: string }> }
    expect(task.type).toBe('remove_host')
    expect(children.map(c => [c.database_id, c.type, c.parent_id]).sort()).toEqual([['dead', 'update', task.task_id], ['moved', 'update', task.task_id]])
    for (const c of children) await waitTask(h1, `/v1/databases/${c.database_id}/tasks/${c.task_id}`)
    await waitTask(h1, `/v1/hosts/host-3/tasks/${task.task_id}`)
    console.log(`host-3 removed and its databases available ${Date.now() - started} ms after the DELETE`)

    for (const d of [h1, h2]) {
      const dead = await database(d, 'dead')
      expect(dead.state).toBe('available')
      expect(dead.spec.nodes).toEqual([{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }])
      expect(dead.instances.map(i => `${i.node_name} ${i.host_id} ${i.postgres?.role ?? '-'} ${i.state}`).sort()).toEqual(['n1 host-1 primary available', 'n2 host-2 primary available'])
      const moved = await database(d, 'moved')
      expect(moved.state).toBe('available')
      expect(moved.instances.map(i => `${i.node_name} ${i.host_id} ${i.postgres?.role ?? '-'} ${i.state}`)).toEqual(['n1 host-2 primary available'])
      expect((await d.get<{ hosts: Array<{ id: string }> }>('/v1/hosts')).body.hosts.map(h => h.id)).toEqual(['host-1', 'host-2'])
      for (const path of ['/v1/databases', '/v1/databases/dead', '/v1/databases/moved', '/v1/hosts']) {
        // A word match: the test's temp dir name (pgmesh-dead-host-XXXXXX) may begin "host-3".
        expect(JSON.stringify((await d.get(path)).body), `${path} on ${d.hostId}`).not.toMatch(/\bhost-3\b/)
      }
    }

    // Replication both ways between the remaining nodes; the failed-over primary takes writes.
    const dead = await database(h1, 'dead')
    const n1 = await connect(dead, 'n1', 'dead')
    const n2 = await connect(dead, 'n2', 'dead')
    try {
      await n1.query('CREATE TABLE items (id text PRIMARY KEY)')
      await until('the table on n2', async () => (await n2.query("SELECT to_regclass('public.items') AS t")).rows[0].t !== null, 30_000, 200)
      await n1.query("INSERT INTO items VALUES ('from-n1')")
      await n2.query("INSERT INTO items VALUES ('from-n2')")
      for (const [client, row] of [[n2, 'from-n1'], [n1, 'from-n2']] as const) {
        await until(`${row} on the other node`, async () => (await client.query('SELECT 1 FROM items WHERE id = $1', [row])).rowCount === 1, 30_000, 200)
      }
    } finally {
      await n1.end()
      await n2.end()
    }
    const moved = await connect(await database(h1, 'moved'), 'n1', 'moved')
    await moved.query('CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)')
    await moved.end()
  }, 420_000)

  it('a delete with force finishes while a host of the database is down; its leftovers go when it returns', async () => {
    await kill(h2)
    expect(instanceDirs(h2).some(i => i.startsWith('dead-'))).toBe(true)
    const res = await h1.request('DELETE', '/v1/databases/dead?force=true')
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h1, `/v1/databases/dead/tasks/${res.body.task.task_id as string}`, 60_000)
    expect((await h1.get('/v1/databases/dead')).status).toBe(404)
    expect(instanceDirs(h1).some(i => i.startsWith('dead-'))).toBe(false)

    await h2.start()
    await until('host-2 to remove its instance of the deleted database', () => !instanceDirs(h2).some(i => i.startsWith('dead-')), 60_000, 250)
    // The database it still holds comes back.
    await until('moved available again', async () => (await database(h1, 'moved')).state === 'available', 60_000, 250)
  }, 180_000)

  it('a removed host that returns learns it was removed and removes its instances; the cluster stays as it is', async () => {
    expect(instanceDirs(h3).length).toBeGreaterThan(0)
    // A host asks whether it was removed only a minute after its join (before that, members may not list it yet).
    await new Promise(resolve => setTimeout(resolve, Math.max(0, joinedAt + 61_000 - Date.now())))
    const started = Date.now()
    // Its Postgres never runs again: the orchestrator leaves servers it finds down to the reconciler, which learns
    // first that the host was removed.
    let ranAgain = ''
    const watching = setInterval(() => { void processesIn(h3).then(seen => { if (ranAgain === '') ranAgain = seen }) }, 100)
    try {
      await h3.start()
      await until('host-3 to remove its instances', async () => instanceDirs(h3).length === 0 && !(await postgresRunningIn(h3)), 60_000, 100)
    } finally {
      clearInterval(watching)
    }
    console.log(`the removed host-3 had removed its instances ${Date.now() - started} ms after its daemon started`)
    expect(ranAgain).toBe('')
    expect(await postgresRunningIn(h3)).toBe(false)
    expect(h3.output).toContain('this host was removed from the cluster')
    for (const d of [h1, h2]) {
      expect((await d.get<{ hosts: Array<{ id: string }> }>('/v1/hosts')).body.hosts.map(h => h.id)).toEqual(['host-1', 'host-2'])
      const moved = await database(d, 'moved')
      expect(moved.state).toBe('available')
      expect(moved.spec.nodes).toEqual([{ name: 'n1', host_ids: ['host-2'] }])
    }
  }, 120_000)
})
