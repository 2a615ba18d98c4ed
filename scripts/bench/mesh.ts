// Mesh benchmark (issue 2): change-to-visible latency on 3 and 10 hosts, join-to-converged with 1,000 databases,
// RSS per daemon idle and holding those 1,000. Prints figures and their ratio to the targets; not a test.
import { type DaemonProcess, TestCluster, remoteChangeLatencies, until } from '../../test/helpers/cluster.js'
import { percentile } from './common.js'

const CHANGES = Number(process.env.BENCH_CHANGES ?? 200)
const GAP_MS = 20

async function rssMb (d: DaemonProcess): Promise<number> {
  const text = await (await fetch(`${d.url}/metrics`)).text()
  const m = /^pgmesh_process_resident_memory_bytes (\d+)/m.exec(text)
  return m === null ? Number.NaN : Number(m[1]) / 1e6
}

function spec (hostId: string, i: number): Record<string, unknown> {
  // Database-sized: a realistic spec with a user, config and two nodes.
  return {
    database_name: `app_${i}`,
    postgresql_conf: { max_connections: 200, work_mem: '16MB' },
    database_users: [{ username: 'admin', password: `secret-${i}`, db_owner: true, attributes: ['LOGIN', 'CREATEDB'] }],
    nodes: [{ name: 'n1', host_ids: [hostId], port: 0 }, { name: 'n2', host_ids: [hostId], port: 0 }]
  }
}

async function latencyRun (hosts: number): Promise<{ p50: number, p99: number, max: number, n: number }> {
  const cluster = await TestCluster.create(`bench-${hosts}`, { reconcile: false })
  try {
    const daemons = await cluster.initAndJoin(hosts)
    const writer = daemons[0]
    if (writer === undefined) throw new Error('no hosts')
    await until('all hosts healthy', async () => {
      const res = await writer.get('/v1/hosts')
      return (res.body.hosts as Array<{ status: { state: string } }>).filter(h => h.status.state === 'healthy').length === hosts
    }, 30_000, 100)
    for (let i = 0; i < CHANGES; i++) {
      const res = await writer.post('/v1/databases', { id: `lat-${i}`, spec: spec('host-1', i) })
      if (res.status !== 200) throw new Error(JSON.stringify(res.body))
      await new Promise(r => setTimeout(r, GAP_MS))
    }
    const last = daemons.at(-1)
    if (last === undefined) throw new Error('no hosts')
    await until('last change everywhere', async () => (await last.get(`/v1/databases/lat-${CHANGES - 1}`)).status === 200, 10_000)
    await new Promise(r => setTimeout(r, 300))
    const all = daemons.slice(1).flatMap(d => remoteChangeLatencies(d.output, 'lat-')).sort((a, b) => a - b)
    return { p50: percentile(all, 0.5), p99: percentile(all, 0.99), max: all.at(-1) ?? Number.NaN, n: all.length }
  } finally {
    await cluster.destroy()
  }
}

async function joinRun (): Promise<{ seedSeconds: number, joinMs: number, idleRss: number, loadedRss: number, joinedRss: number }> {
  const cluster = await TestCluster.create('bench-join', { reconcile: false })
  try {
    const [h1] = await cluster.initAndJoin(1)
    if (h1 === undefined) throw new Error('no host')
    await new Promise(r => setTimeout(r, 1000))
    const idleRss = await rssMb(h1)
    const t0 = Date.now()
    for (let i = 0; i < 1000; i++) {
      const res = await h1.post('/v1/databases', { id: `db-${i}`, spec: spec('host-1', i) })
      if (res.status !== 200) throw new Error(JSON.stringify(res.body))
    }
    const seedSeconds = (Date.now() - t0) / 1000
    const loadedRss = await rssMb(h1)
    const token = (await h1.get('/v1/cluster/join-token')).body
    const h2 = await cluster.add('host-2')
    const j0 = performance.now()
    const res = await h2.post('/v1/cluster/join', token)
    const joinMs = performance.now() - j0
    if (res.status !== 204) throw new Error(JSON.stringify(res.body))
    const listed = (await h2.get('/v1/databases')).body.databases.length as number
    if (listed !== 1000) throw new Error(`joined host lists ${listed} databases`)
    return { seedSeconds, joinMs, idleRss, loadedRss, joinedRss: await rssMb(h2) }
  } finally {
    await cluster.destroy()
  }
}

const fmt = (n: number, digits = 1): string => n.toFixed(digits)
const ratio = (value: number, target: number): string => `${fmt(value / target, 2)}× target`

async function main (): Promise<void> {
  for (const hosts of [3, 10]) {
    const r = await latencyRun(hosts)
    console.log(`change-to-visible, ${hosts} hosts: p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, max ${fmt(r.max)} ms over ${r.n} arrivals` +
      (hosts === 3 ? ` (p99 ${ratio(r.p99, 50)} of 50 ms)` : ''))
  }
  const j = await joinRun()
  console.log(`seeding 1,000 databases through the API: ${fmt(j.seedSeconds)} s (${fmt(1000 / j.seedSeconds, 0)} creates/s)`)
  console.log(`join-to-converged with 1,000 databases: ${fmt(j.joinMs, 0)} ms (${ratio(j.joinMs, 1000)} of 1 s)`)
  console.log(`RSS: idle ${fmt(j.idleRss)} MB, holding 1,000 databases ${fmt(j.loadedRss)} MB, joined host ${fmt(j.joinedRss)} MB (${ratio(Math.max(j.loadedRss, j.joinedRss), 150)} of 150 MB)`)
}

await main()
