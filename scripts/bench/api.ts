// API benchmark (issue 3): one host holding 1,000 databases: GET /v1/databases and GET /v1/databases/{id}
// throughput, and POST-to-durable latency (the create is acknowledged only after its fdatasync). Prints figures.
import { readFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { type DaemonProcess, TestCluster } from '../../test/helpers/cluster.js'

const DATABASES = Number(process.env.BENCH_DATABASES ?? 1000)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONCURRENCY = 8

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN
}

function spec (i: number): Record<string, unknown> {
  return {
    database_name: `app_${i}`,
    postgresql_conf: { max_connections: 200, work_mem: '16MB' },
    database_users: [{ username: 'admin', password: `secret-${i}`, db_owner: true, attributes: ['LOGIN', 'CREATEDB'] }],
    nodes: [{ name: 'n1', host_ids: ['host-1'], port: 0 }, { name: 'n2', host_ids: ['host-1'], port: 0 }]
  }
}

/** CPU seconds the daemon process has used (all its threads), from /proc. */
async function cpuSeconds (d: DaemonProcess): Promise<number> {
  const stat = await readFile(`/proc/${d.pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** One GET over a keep-alive connection; the body is read but not decoded (a gzip body stays gzipped). */
async function get (agent: Agent, url: URL, headers: Record<string, string>): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { agent, headers }, res => {
      res.on('data', () => {})
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * Requests per second over SECONDS with CONCURRENCY keep-alive clients, and per CPU-second of the daemon: the
 * clients share the machine's cores with the daemon, so the second figure is what one core serves.
 */
async function throughput (d: DaemonProcess, path: () => string, headers: Record<string, string> = {}, expectStatus = 200): Promise<{ wall: number, perCore: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const deadline = performance.now() + SECONDS * 1000
  const cpuBefore = await cpuSeconds(d)
  let done = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < deadline) {
      const url = new URL(path(), d.url)
      const status = await get(agent, url, headers)
      if (status !== expectStatus) throw new Error(`${url.pathname}: ${status}`)
      done++
    }
  }))
  const cpu = await cpuSeconds(d) - cpuBefore
  agent.destroy()
  return { wall: done / SECONDS, perCore: done / cpu }
}

const cluster = await TestCluster.create('bench-api', { reconcile: false, logLevel: 'warn' })
try {
  const [h1] = await cluster.initAndJoin(1)
  if (h1 === undefined) throw new Error('no host')
  const latencies: number[] = []
  for (let i = 0; i < DATABASES; i++) {
    const t0 = performance.now()
    const res = await h1.post('/v1/databases', { id: `db-${i}`, spec: spec(i) })
    latencies.push(performance.now() - t0)
    if (res.status !== 200) throw new Error(JSON.stringify(res.body))
  }
  const lastHundred = latencies.slice(-100).sort((a, b) => a - b)
  console.log(`POST /v1/databases (acknowledged after fdatasync), the last 100 of ${DATABASES}: p50 ${percentile(lastHundred, 0.5).toFixed(1)} ms, p99 ${percentile(lastHundred, 0.99).toFixed(1)} ms (${(percentile(lastHundred, 0.99) / 20).toFixed(2)}× the 20 ms target)`)
  const sample = await fetch(`${h1.url}/v1/databases`, { headers: { 'accept-encoding': 'identity' } })
  const bytes = (await sample.arrayBuffer()).byteLength
  const etag = sample.headers.get('etag') ?? ''
  const variants: Array<[string, Record<string, string>, number]> = [
    [`identity, ${(bytes / 1024).toFixed(0)} KB`, { 'accept-encoding': 'identity' }, 200],
    ['gzip', { 'accept-encoding': 'gzip' }, 200],
    ['If-None-Match, 304', { 'if-none-match': etag }, 304]
  ]
  for (const [label, headers, status] of variants) {
    const list = await throughput(h1, () => '/v1/databases', headers, status)
    console.log(`GET /v1/databases with ${DATABASES} databases (${label}): ${list.wall.toFixed(0)} requests/s, ${list.perCore.toFixed(0)} per daemon CPU-second (${(list.perCore / 5000).toFixed(2)}× the 5,000/s target)`)
  }
  let n = 0
  const one = await throughput(h1, () => `/v1/databases/db-${(n++) % DATABASES}`)
  console.log(`GET /v1/databases/{id}: ${one.wall.toFixed(0)} requests/s, ${one.perCore.toFixed(0)} per daemon CPU-second (${(one.perCore / 5000).toFixed(2)}× the 5,000/s target)`)
} finally {
  await cluster.destroy()
}
