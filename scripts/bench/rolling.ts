// Rolling-restart benchmark (issue 12): write unavailability while a change that needs restarts goes through a
// 3-node database (n1 with a streaming replica), next to restarting every instance at the same moment (what pgmesh
// did before rolling restarts, reproduced with pg_ctl restart on every instance at once). A client on every
// node writes every 25 ms; an outage runs from a refused write to the next accepted one. Printed per node (max and
// total ms) and for the whole database (time during which no node took writes); the ratio is the figure.
import { spawn } from 'node:child_process'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { type DaemonProcess, TestCluster, until } from '../../test/helpers/cluster.js'
import { NodeProbe, type Outage } from '../../test/helpers/probes.js'
import { ok, updateSpec } from '../../test/helpers/specs.js'

const LOGIN = { user: 'admin', password: 'bench-password', database: 'bench' }
const RUNS = Number(process.env.BENCH_RUNS ?? 2)

interface Instance { id: string, node_name: string, host_id: string, state: string, postgres?: { role?: string } }

async function waitTask (d: DaemonProcess, taskId: string): Promise<void> {
  await until(`task ${taskId}`, async () => {
    const t = (await d.get(`/v1/databases/bench/tasks/${taskId}`)).body
    if (t.status === 'failed') throw new Error(`task failed: ${t.error as string}`)
    return t.status === 'completed'
  }, 300_000, 200)
}

/**
 * What pgmesh did before rolling restarts: every host restarted its instances as soon as the update reached it, so
 * every server of the database restarted at the same moment. Reproduced with `pg_ctl restart -m fast` on every data
 * directory of the cluster at once (as the orchestrator runs it: as the postgres user).
 */
async function restartAllAtOnce (root: string): Promise<void> {
  const major = readdirSync('/usr/lib/postgresql').sort().at(-1) ?? '15'
  const dirs = readdirSync(root).flatMap(host => {
    try { return readdirSync(join(root, host, 'instances')).map(id => join(root, host, 'instances', id)) } catch { return [] }
  })
  // PGPASSFILE as the orchestrator sets it: the postmaster hands it to its replication workers.
  await Promise.all(dirs.map(async dir => await new Promise<void>((resolve, reject) => {
    const pgdata = join(dir, 'pgdata')
    spawn('runuser', ['-u', 'postgres', '--', 'env', `PGPASSFILE=${join(dir, 'pgpass')}`, `/usr/lib/postgresql/${major}/bin/pg_ctl`, 'restart', '-D', pgdata, '-m', 'fast', '-w', '-s'], { stdio: 'ignore' })
      .once('exit', code => { code === 0 ? resolve() : reject(new Error(`pg_ctl restart ${pgdata}: exit ${String(code)}`)) })
  })))
}

/** Milliseconds during which every node was refusing writes at once. */
function wholeDatabaseMs (outages: readonly Outage[], nodes: readonly string[]): number {
  const edges = outages.flatMap(o => [{ at: o.from, node: o.node, delta: 1 }, { at: o.to, node: o.node, delta: -1 }]).sort((a, b) => a.at - b.at)
  const down = new Map<string, number>()
  let total = 0
  let since: number | undefined
  for (const e of edges) {
    down.set(e.node, (down.get(e.node) ?? 0) + e.delta)
    const all = nodes.every(n => (down.get(n) ?? 0) > 0)
    if (all && since === undefined) since = e.at
    if (!all && since !== undefined) { total += e.at - since; since = undefined }
  }
  return total
}

async function measure (hosts: DaemonProcess[], change: () => Promise<void>): Promise<{ perNode: Record<string, { max: number, total: number }>, whole: number, tookMs: number }> {
  const probes = ['n1', 'n2', 'n3'].map((node, i) => new NodeProbe(hosts[i] as DaemonProcess, 'bench', node, LOGIN, 'probe'))
  for (const p of probes) p.start()
  await new Promise(resolve => setTimeout(resolve, 1500))
  const started = Date.now()
  await change()
  const tookMs = Date.now() - started
  await new Promise(resolve => setTimeout(resolve, 1500))
  for (const p of probes) await p.stop()
  const outages = probes.flatMap(p => p.outages)
  const perNode = Object.fromEntries(probes.map(p => [p.node, { max: p.longestMs(), total: p.outages.reduce((sum, o) => sum + o.to - o.from, 0) }]))
  return { perNode, whole: wholeDatabaseMs(outages, probes.map(p => p.node)), tookMs }
}

function line (name: string, r: Awaited<ReturnType<typeof measure>>): string {
  const nodes = Object.entries(r.perNode).map(([n, v]) => `${n} max ${v.max} / total ${v.total}`).join('; ')
  return `${name}: whole database unavailable ${r.whole} ms; per node (ms) ${nodes}; took ${r.tookMs} ms`
}

const cluster = await TestCluster.create('bench-rolling', { logLevel: 'info' })
try {
  const hosts = await cluster.initAndJoin(3)
  const [h1] = hosts as [DaemonProcess]
  await until('every host known', async () => ((await h1.get('/v1/hosts')).body.hosts as unknown[]).length === 3)
  const created = await ok(h1.post('/v1/databases', {
    id: 'bench',
    spec: {
      database_name: 'bench',
      database_users: [{ username: 'admin', password: LOGIN.password, attributes: ['LOGIN'], db_owner: true }],
      nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }]
    }
  }), 'create')
  await waitTask(h1, created.task.task_id as string)
  const n1 = ((await h1.get('/v1/databases/bench')).body.instances as Array<Instance & { connection_info: { addresses: string[], port: number } }>)
    .find(i => i.node_name === 'n1' && i.postgres?.role === 'primary')
  const client = new pg.Client({ host: n1?.connection_info.addresses[0], port: n1?.connection_info.port, ...LOGIN })
  await client.connect()
  await client.query('CREATE TABLE probe (id text PRIMARY KEY, node text)')
  await client.end()
  await new Promise(resolve => setTimeout(resolve, 3000))

  const rolling: Array<Awaited<ReturnType<typeof measure>>> = []
  const together: Array<Awaited<ReturnType<typeof measure>>> = []
  for (let run = 0; run < RUNS; run++) {
    const r = await measure(hosts, async () => {
      await updateSpec(h1, 'bench', spec => { spec.postgresql_conf = { ...spec.postgresql_conf, max_connections: 120 + run * 10 } })
      const tasks = (await h1.get('/v1/databases/bench/tasks')).body.tasks as Array<{ task_id: string, type: string, status: string }>
      const task = tasks.find(t => t.type === 'update' && t.status !== 'completed')
      if (task !== undefined) await waitTask(h1, task.task_id)
    })
    rolling.push(r)
    console.log(new Date(Date.now() - r.tookMs - 1500).toISOString(), line(`run ${run + 1} rolling restart (max_connections)`, r))

    const a = await measure(hosts, async () => { await restartAllAtOnce(cluster.root) })
    together.push(a)
    console.log(new Date(Date.now() - a.tookMs - 1500).toISOString(), line(`run ${run + 1} every instance at once`, a))
  }
  const worst = (rs: typeof rolling, f: (r: (typeof rolling)[number]) => number): number => Math.max(...rs.map(f))
  const wholeRolling = worst(rolling, r => r.whole)
  const wholeTogether = worst(together, r => r.whole)
  const nodeRolling = worst(rolling, r => Math.max(...Object.values(r.perNode).map(v => v.max)))
  const nodeTogether = worst(together, r => Math.max(...Object.values(r.perNode).map(v => v.max)))
  console.log(`whole-database write unavailability: rolling ${wholeRolling} ms vs all at once ${wholeTogether} ms (${wholeTogether === 0 ? 'n/a' : `${(wholeRolling / wholeTogether).toFixed(2)}×`}; target 0 ms)`)
  console.log(`longest per-node outage: rolling ${nodeRolling} ms vs all at once ${nodeTogether} ms (${(nodeRolling / Math.max(1, nodeTogether)).toFixed(2)}×; n1 switches over instead of restarting)`)
} finally {
  if (process.env.BENCH_LOG_DIR !== undefined) for (const d of cluster.daemons) writeFileSync(`${process.env.BENCH_LOG_DIR}/${d.hostId}.log`, d.output)
  await cluster.destroy()
}
