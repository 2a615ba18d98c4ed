// Partition benchmark: each host (daemon and its Postgres) in its own network namespace behind a switch; the node's
// primary host is cut off from the others while a writer on each side keeps inserting. Per run: when the cut-off
// primary stops acknowledging (fenced), when the majority's new primary takes its first write, and how long the
// cut-off host takes to rejoin as a replica once healed. Needs root (ip netns), like test/ha-partition.test.ts.
import { type ChildProcess, spawn } from 'node:child_process'
import { resolve } from 'node:path'
import pg from 'pg'
import { type DaemonProcess, TestCluster, until } from '../../test/helpers/cluster.js'
import { SwitchedHosts } from '../../test/helpers/netns.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const PASSWORD = 'bench-password'

interface Instance { node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { role?: string } }

async function instances (d: DaemonProcess): Promise<Instance[]> {
  return ((await d.get<{ instances: Instance[] }>('/v1/databases/bench')).body).instances
}

function primaryOf (all: Instance[]): Instance | undefined {
  return all.find(i => i.node_name === 'n1' && i.postgres?.role === 'primary' && i.state === 'available')
}

async function connect (instance: Instance | undefined): Promise<pg.Client> {
  const info = instance?.connection_info
  if (info === undefined) throw new Error('no connection info')
  const client = new pg.Client({ host: info.addresses[0], port: info.port, user: 'admin', password: PASSWORD, database: 'bench', connectionTimeoutMillis: 2000, query_timeout: 3000 })
  client.on('error', () => {})
  await client.connect()
  return client
}

function median (values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b)
  return (sorted[Math.floor(sorted.length / 2)] ?? Number.NaN).toFixed(0)
}

const net = await SwitchedHosts.create(3)
const cluster = await TestCluster.create('bench-partition', { logLevel: 'info' })
const children: ChildProcess[] = []
try {
  const hosts = await cluster.initAndJoin(3, i => ({ netns: SwitchedHosts.netns(i), address: SwitchedHosts.address(i) }))
  const observer = hosts[2] as DaemonProcess
  await until('every host known', async () => (await observer.get<{ hosts: unknown[] }>('/v1/hosts')).body.hosts.length === 3)
  const created = await observer.post('/v1/databases', {
    id: 'bench',
    spec: {
      database_name: 'bench',
      database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
      nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-3'] }]
    }
  })
  if (created.status !== 200) throw new Error(JSON.stringify(created.body))
  await until('database available', async () => (await observer.get(`/v1/databases/bench/tasks/${created.body.task.task_id as string}`)).body.status === 'completed', 120_000, 200)
  const setup = await connect(primaryOf(await instances(observer)))
  await setup.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.events (id text PRIMARY KEY, src text)', '{ddl_sql}')")
  await setup.end()

  const fenced: number[] = []
  const promoted: number[] = []
  const rejoined: number[] = []
  for (let run = 0; run < RUNS; run++) {
    await until('a synchronous replica', async () => (await instances(observer)).filter(i => i.node_name === 'n1' && i.state === 'available').length === 2, 120_000, 200)
    await new Promise(resolve => setTimeout(resolve, 2000))
    const old = primaryOf(await instances(observer))
    const victim = Number(old?.host_id.replace('host-', ''))
    // Side A: a client inside the primary's namespace. Side B: this process, through whatever primary host-3 names.
    const errorsA: number[] = []
    let acksA = 0
    const writerA = spawn('ip', ['netns', 'exec', SwitchedHosts.netns(victim), process.execPath, resolve(import.meta.dirname, '../../test/helpers/writer.mjs'),
      SwitchedHosts.address(victim), String(old?.connection_info?.port), 'admin', 'bench', `a${run}`], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PGPASSWORD: PASSWORD } })
    children.push(writerA)
    writerA.stdout?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (line.startsWith('ack ')) acksA++
        else if (line.startsWith('err ')) errorsA.push(Number(line.split(' ')[1]))
      }
    })
    const newPrimaryWrites: number[] = []
    let stopB = false
    let written = 0
    const writerB = (async () => {
      let client: pg.Client | undefined
      let host = ''
      while (!stopB) {
        try {
          if (client === undefined) {
            const p = primaryOf(await instances(observer))
            client = await connect(p)
            host = p?.host_id ?? ''
          }
          await client.query('INSERT INTO public.events VALUES ($1, $2)', [`b${run}-${written++}`, 'b'])
          if (host !== old?.host_id) newPrimaryWrites.push(Date.now())
        } catch {
          await client?.end().catch(() => {})
          client = undefined
          await new Promise(resolve => setTimeout(resolve, 50))
        }
      }
      await client?.end().catch(() => {})
    })()
    await until('both writers writing', () => acksA > 20 && written > 20, 30_000)
    const cutAt = Date.now()
    await net.cut(victim)
    await until('side B writing through a new primary', () => newPrimaryWrites.length > 0, 60_000, 20)
    const fencedAt = errorsA.find(at => at > cutAt) ?? Number.NaN
    fenced.push(fencedAt - cutAt)
    promoted.push((newPrimaryWrites[0] ?? Number.NaN) - cutAt)
    const healedAt = Date.now()
    await net.heal(victim)
    await until(`host-${victim} back as a replica`, async () => (await instances(observer))
      .some(i => i.host_id === old?.host_id && i.node_name === 'n1' && i.postgres?.role === 'replica' && i.state === 'available'), 120_000, 100)
    rejoined.push(Date.now() - healedAt)
    console.log(`run ${run + 1}: cut host-${victim}; its primary refused writes after ${fenced.at(-1)} ms, the new primary took writes after ${promoted.at(-1)} ms; rejoined as a replica ${rejoined.at(-1)} ms after healing`)
    writerA.kill('SIGTERM')
    stopB = true
    await writerB
  }
  console.log(`partition, ${RUNS} runs (medians): cut-off primary fenced after ${median(fenced)} ms, new primary writing after ${median(promoted)} ms, rejoined ${median(rejoined)} ms after healing`)
} catch (err) {
  console.error(cluster.problems())
  throw err
} finally {
  for (const c of children) c.kill('SIGKILL')
  await cluster.destroy()
  await net.destroy()
}
