// Rolling restarts with daemons as processes and real Postgres (process orchestrator): a change that needs restarts
// goes through a 3-node database one instance at a time while a client on every node writes every 25 ms.
import { writeFileSync } from 'node:fs'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'
import { NodeProbe, overlappingOutages } from './helpers/probes.js'
import { ok, updateSpec } from './helpers/specs.js'

const PASSWORD = 'roll-password'
const LOGIN = { user: 'admin', password: PASSWORD, database: 'roll' }

interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { role?: string } }

let cluster: TestCluster | undefined

async function instances (d: DaemonProcess): Promise<Instance[]> {
  return (await ok(d.get<{ instances: Instance[] }>('/v1/databases/roll'), 'get roll')).instances
}

async function waitTask (d: DaemonProcess, taskId: string, timeoutMs = 240_000): Promise<string> {
  const task = await until(`task ${taskId}`, async () => {
    const t = (await d.get(`/v1/databases/roll/tasks/${taskId}`)).body
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, timeoutMs, 250)
  const log = (await d.get(`/v1/databases/roll/tasks/${taskId}/log`)).body
  const lines = (log.entries as Array<{ timestamp: string, message: string, fields: { host_id?: string } }>).map(e => `${e.timestamp} ${e.fields.host_id ?? ''} ${e.message}`).join('\n')
  if (task.status !== 'completed') throw new Error(`task ${task.status as string}: ${task.error as string}\n${lines}\n${cluster?.problems() ?? ''}`)
  return lines
}

async function query<T = Record<string, unknown>> (instance: Instance | undefined, sql: string): Promise<T[]> {
  const info = instance?.connection_info
  if (info === undefined) throw new Error('no connection info')
  const client = new pg.Client({ host: info.addresses[0], port: info.port, ...LOGIN, connectionTimeoutMillis: 3000 })
  await client.connect()
  try {
    return (await client.query(sql)).rows as T[]
  } finally {
    await client.end()
  }
}

describe('rolling restarts', () => {
  let hosts: DaemonProcess[]

  beforeAll(async () => {
    cluster = await TestCluster.create('rolling')
    hosts = await cluster.initAndJoin(3)
    const [h1] = hosts as [DaemonProcess]
    // n1 has a streaming replica on host-2; n2 and n3 are single instances. Every node takes writes.
    const created = await ok(h1.post('/v1/databases', {
      id: 'roll',
      spec: {
        database_name: 'roll',
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }]
      }
    }), 'create roll')
    await waitTask(h1, created.task.task_id as string)
    const n1 = (await instances(h1)).find(i => i.node_name === 'n1' && i.postgres?.role === 'primary')
    await query(n1, 'CREATE TABLE probe (id text PRIMARY KEY, node text)')
    for (const i of await instances(h1)) {
      if (i.postgres?.role !== 'primary') continue
      await until(`the table on ${i.node_name}`, async () => (await query<{ t: string | null }>(i, "SELECT to_regclass('public.probe')::text AS t"))[0]?.t === 'probe', 30_000)
    }
  }, 300_000)

  afterEach((context) => {
    if (context.task.result?.state !== 'fail') return
    console.log(cluster?.problems())
    if (process.env.HA_LOG_DIR !== undefined) for (const d of hosts) writeFileSync(`${process.env.HA_LOG_DIR}/${d.hostId}.log`, d.output)
  })

  afterAll(async () => {
    await cluster?.destroy()
  }, 120_000)

  it('restarts one instance at a time: never two nodes refusing writes at once, n1 switched over, rows everywhere', async () => {
    const [h1, h2, h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const before = await instances(h1)
    const started = new Map<string, string>()
    for (const i of before) started.set(i.id, (await query<{ at: string }>(i, 'SELECT pg_postmaster_start_time()::text AS at'))[0]?.at ?? '')

    // Each probe asks a different host where its node's primary is.
    const probes = [new NodeProbe(h1, 'roll', 'n1', LOGIN, 'probe'), new NodeProbe(h2, 'roll', 'n2', LOGIN, 'probe'), new NodeProbe(h3, 'roll', 'n3', LOGIN, 'probe')]
    for (const p of probes) p.start()
    await new Promise(resolve => setTimeout(resolve, 1000))
    const updatedAt = Date.now()
    await updateSpec(h1, 'roll', spec => { spec.postgresql_conf = { ...spec.postgresql_conf, max_connections: 150 } })
    const taskId = (await ok(h1.get<{ tasks: Array<{ task_id: string, type: string }> }>('/v1/databases/roll/tasks'), 'tasks')).tasks
      .find(t => t.type === 'update')?.task_id
    if (taskId === undefined) throw new Error('no update task')
    const log = await waitTask(h1, taskId)
    const rolledMs = Date.now() - updatedAt
    await new Promise(resolve => setTimeout(resolve, 1000))
    for (const p of probes) await p.stop()

    const outages = probes.flatMap(p => p.outages)
    console.log(`rolling restart took ${rolledMs} ms; outages (ms): ${probes.map(p => `${p.node} ${p.outages.map(o => o.to - o.from).join('+') || 0}`).join(', ')}`)
    expect(overlappingOutages(outages), JSON.stringify(outages)).toEqual([])
    // Every node went through a restart or a switchover (each ends its client's session: an outage on each), n1's no
    // longer than a switchover.
    for (const p of probes) {
      expect(p.acknowledged.length).toBeGreaterThan(20)
      expect(p.outages.length, p.node).toBeGreaterThan(0)
    }
    expect(probes[0]?.longestMs()).toBeLessThan(10_000)

    // The setting is in effect on every instance, each of which restarted once.
    const after = await instances(h1)
    for (const i of after) {
      expect((await query<{ v: string }>(i, "SELECT current_setting('max_connections') AS v"))[0]?.v, i.id).toBe('150')
      expect((await query<{ at: string }>(i, 'SELECT pg_postmaster_start_time()::text AS at'))[0]?.at, i.id).not.toBe(started.get(i.id))
    }
    // n1 was handed over to its replica before its old primary restarted (it came back as a replica).
    const n1Primary = after.find(i => i.node_name === 'n1' && i.postgres?.role === 'primary')
    expect(n1Primary?.host_id).toBe('host-2')
    expect(after.find(i => i.node_name === 'n1' && i.host_id === 'host-1')?.postgres?.role).toBe('replica')
    expect(log).toMatch(/waits for its turn in the rolling restart/)
    expect(log).toMatch(/restarted in its turn of the rolling restart/)

    // Replication works in every direction: every node ends with the same rows, every acknowledged one among them. A
    // write whose session a restart ended may have committed without its acknowledgement: it may be there too, but then
    // on every node.
    const primaries = after.filter(x => x.postgres?.role === 'primary')
    const acknowledged = probes.flatMap(p => p.acknowledged)
    let state = ''
    await until('the same rows, every acknowledged one among them, on every node', async () => {
      const rows = await Promise.all(primaries.map(async i => new Set((await query<{ id: string }>(i, 'SELECT id FROM probe')).map(r => r.id))))
      const missing = rows.map(ids => acknowledged.filter(id => !ids.has(id)))
      const sizes = rows.map(ids => ids.size)
      state = primaries.map((i, k) => `${i.node_name}: ${sizes[k] ?? 0} rows, ${missing[k]?.length ?? 0} acknowledged missing ${missing[k]?.slice(0, 3).join(' ') ?? ''}`).join('; ')
      const [first] = rows
      const same = first !== undefined && rows.every(ids => ids.size === first.size && [...ids].every(id => first.has(id)))
      return same && missing.every(m => m.length === 0) ? true : undefined
    }, 30_000, 500).catch((err: Error) => { throw new Error(`${err.message}: ${state}`) })
  }, 420_000)
})
