// A real partition: each host (daemon and its Postgres) in its own network namespace behind a switch; the primary's
// host is cut off from the others while a writer on each side keeps inserting. The cut-off primary must stop
// accepting writes before the other side promotes; after healing it rejoins as a replica; nothing accepted is lost.
import { type ChildProcess, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'
import { SwitchedHosts } from './helpers/netns.js'

interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { role?: string } }
interface Ack { id: string, at: number, host: string }

const PASSWORD = 'part-password'

async function instances (d: DaemonProcess): Promise<Instance[]> {
  return ((await d.get<{ instances: Instance[] }>('/v1/databases/ha')).body).instances
}

function primaryOf (all: Instance[], node: string): Instance | undefined {
  return all.find(i => i.node_name === node && i.postgres?.role === 'primary' && i.state === 'available')
}

async function connect (instance: Instance | undefined): Promise<pg.Client> {
  const info = instance?.connection_info
  if (info === undefined) throw new Error('no connection info')
  const client = new pg.Client({ host: info.addresses[0], port: info.port, user: 'admin', password: PASSWORD, database: 'ha', connectionTimeoutMillis: 2000, query_timeout: 3000 })
  client.on('error', () => {})
  await client.connect()
  return client
}

async function idsOn (instance: Instance | undefined): Promise<Set<string>> {
  const c = await connect(instance)
  try {
    return new Set((await c.query('SELECT id FROM public.events')).rows.map(r => r.id as string))
  } finally {
    await c.end()
  }
}

describe('a primary cut off from the majority', () => {
  let net: SwitchedHosts | undefined
  let cluster: TestCluster | undefined
  let hosts: DaemonProcess[]
  const children: ChildProcess[] = []

  beforeAll(async () => {
    net = await SwitchedHosts.create(3)
    cluster = await TestCluster.create('ha-partition')
    hosts = await cluster.initAndJoin(3, i => ({ netns: SwitchedHosts.netns(i), address: SwitchedHosts.address(i) }))
    await until('every host to know every other', async () => {
      for (const d of hosts) if ((await d.get<{ hosts: unknown[] }>('/v1/hosts')).body.hosts.length !== 3) return false
      return true
    })
  })

  afterEach((context) => {
    if (context.task.result?.state !== 'fail') return
    console.log(cluster?.problems())
    if (process.env.HA_LOG_DIR !== undefined) for (const d of hosts) writeFileSync(`${process.env.HA_LOG_DIR}/${d.hostId}.log`, d.output)
  })

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL')
    await cluster?.destroy()
    await net?.destroy()
  })

  it('fences the cut-off primary before the majority promotes; it rejoins as a replica; nothing accepted is lost', async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const created = await h1.post('/v1/databases', {
      id: 'ha',
      spec: {
        database_name: 'ha',
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-3'] }]
      }
    })
    expect(created.status, JSON.stringify(created.body)).toBe(200)
    await until('the database available', async () => {
      const t = (await h1.get(`/v1/databases/ha/tasks/${created.body.task.task_id as string}`)).body
      if (t.status === 'failed') throw new Error(t.error)
      return t.status === 'completed'
    }, 120_000, 200)
    const before = await instances(h3)
    const oldPrimary = primaryOf(before, 'n1')
    expect(oldPrimary?.host_id).toBe('host-1')
    const admin = await connect(oldPrimary)
    await admin.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.events (id text PRIMARY KEY, src text)', '{ddl_sql}')")
    // The replica acknowledges every commit before the cut (and so may take over).
    await until('a synchronous replica', async () => (await admin.query("SELECT 1 FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")).rowCount === 1, 30_000, 200)
    await admin.end()
    await until('the table on n2', async () => {
      const c = await connect(primaryOf(before, 'n2'))
      try { return (await c.query("SELECT to_regclass('public.events') AS t")).rows[0].t !== null } finally { await c.end() }
    }, 30_000, 200)
    await new Promise(resolve => setTimeout(resolve, 2000))

    // Side A: a client inside host-1's namespace, writing to host-1's instance.
    const sideA: Ack[] = []
    const errorsA: Array<{ at: number, message: string }> = []
    const writerA = spawn('ip', ['netns', 'exec', SwitchedHosts.netns(1), process.execPath, resolve(import.meta.dirname, 'helpers/writer.mjs'),
      SwitchedHosts.address(1), String(oldPrimary?.connection_info?.port), 'admin', 'ha', 'a'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PGPASSWORD: PASSWORD } })
    children.push(writerA)
    let buffered = ''
    writerA.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        const [kind, a, b, ...rest] = line.split(' ')
        if (kind === 'ack') sideA.push({ id: a ?? '', at: Number(b), host: 'host-1' })
        else if (kind === 'err') errorsA.push({ at: Number(a), message: [b, ...rest].join(' ') })
      }
    })

    // Side B: this process, writing to n1's primary as host-3's API names it.
    const sideB: Ack[] = []
    let stopB = false
    const writerB = (async () => {
      let client: pg.Client | undefined
      let host = ''
      let next = 0
      while (!stopB) {
        try {
          if (client === undefined) {
            const p = primaryOf(await instances(h3), 'n1')
            client = await connect(p)
            host = p?.host_id ?? ''
          }
          const id = `b-${next++}`
          await client.query('INSERT INTO public.events VALUES ($1, $2)', [id, 'b'])
          sideB.push({ id, at: Date.now(), host })
        } catch {
          await client?.end().catch(() => {})
          client = undefined
          await new Promise(resolve => setTimeout(resolve, 100))
        }
      }
      await client?.end().catch(() => {})
    })()
    await until('both writers writing', () => sideA.length > 20 && sideB.length > 20, 30_000)

    const cutAt = Date.now()
    await net!.cut(1)
    await until('side B writing through a new primary', () => sideB.some(a => a.host === 'host-2'), 60_000, 50)
    const promotedAt = Math.min(...sideB.filter(a => a.host === 'host-2').map(a => a.at))
    const lastA = Math.max(...sideA.map(a => a.at))
    const fencedAt = errorsA.find(e => e.at > cutAt)?.at
    console.log(`after the cut: side A's last acknowledged write at +${lastA - cutAt} ms, its first error at +${(fencedAt ?? Number.NaN) - cutAt} ms (${errorsA.find(e => e.at > cutAt)?.message ?? ''}); the new primary's first write at +${promotedAt - cutAt} ms`)
    expect(fencedAt).toBeDefined()
    expect(fencedAt!).toBeLessThan(promotedAt)
    expect(lastA).toBeLessThan(promotedAt)
    const acknowledgedAfterCut = sideA.filter(a => a.at > cutAt).length
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(sideA.filter(a => a.at > promotedAt)).toEqual([])

    const healedAt = Date.now()
    await net!.heal(1)
    await until('host-1 back as a replica', async () => {
      const all = await instances(h3)
      return all.some(i => i.host_id === 'host-1' && i.node_name === 'n1' && i.postgres?.role === 'replica' && i.state === 'available')
    }, 120_000, 250)
    console.log(`host-1 rejoined as a replica ${Date.now() - healedAt} ms after healing; side A acknowledged ${acknowledgedAfterCut} writes after the cut`)
    writerA.kill('SIGTERM')
    stopB = true
    await writerB

    const after = await instances(h3)
    const accepted = [...sideA, ...sideB].map(a => a.id)
    const onN1 = await idsOn(primaryOf(after, 'n1'))
    expect(accepted.filter(id => !onN1.has(id))).toEqual([])
    await until('every accepted row on n2', async () => {
      const onN2 = await idsOn(primaryOf(after, 'n2'))
      const missing = accepted.filter(id => !onN2.has(id))
      if (missing.length > 0) console.log(`n2 misses ${missing.length} accepted rows (e.g. ${missing.slice(0, 3).join(', ')})`)
      return missing.length === 0
    }, 60_000, 1000)
  }, 300_000)

  it('a primary whose daemon restarts cut off from the majority is fenced by its lease keeper; it rejoins as a replica', async () => {
    const [h1, h2, h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const primary = primaryOf(await instances(h3), 'n1')
    // The test before handed n1 to host-2.
    expect(primary?.host_id).toBe('host-2')
    const port = String(primary?.connection_info?.port)
    const accepting = async (): Promise<boolean> => await new Promise(resolve => {
      spawn('ip', ['netns', 'exec', SwitchedHosts.netns(2), 'pg_isready', '-q', '-t', '1', '-h', SwitchedHosts.address(2), '-p', port])
        .once('exit', code => { resolve(code === 0) })
    })
    // host-1, rebuilt as a replica by the test before, acknowledges every commit again (and so may take over).
    const admin = await connect(primary)
    await until('a synchronous replica', async () => (await admin.query("SELECT 1 FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")).rowCount === 1, 30_000, 200)
    await admin.end()
    await new Promise(resolve => setTimeout(resolve, 2000))
    await net!.cut(2)
    // The daemon dies; its Postgres runs on, writable, and nothing fences it until a daemon is back.
    await h2.stop('SIGKILL')
    expect(await accepting()).toBe(true)
    const restartedAt = Date.now()
    await h2.start(false)
    await until('the restarted daemon to fence the Postgres it found', async () => !(await accepting()), 30_000, 100)
    console.log(`the restarted daemon fenced its primary ${Date.now() - restartedAt} ms after it started`)
    await until('host-1 primary on the majority side', async () => primaryOf(await instances(h1), 'n1')?.host_id === 'host-1', 60_000, 250)

    await net!.heal(2)
    await until('host-2 back as a replica', async () => {
      const all = await instances(h3)
      return all.some(i => i.host_id === 'host-2' && i.node_name === 'n1' && i.postgres?.role === 'replica' && i.state === 'available')
    }, 120_000, 250)
    const c = await connect(primaryOf(await instances(h3), 'n1'))
    try {
      await c.query('INSERT INTO public.events VALUES ($1, $2)', ['after-restart', 'c'])
    } finally {
      await c.end()
    }
    await until('the row on n2', async () => (await idsOn(primaryOf(await instances(h3), 'n2'))).has('after-restart'), 30_000, 500)
  }, 300_000)
})
