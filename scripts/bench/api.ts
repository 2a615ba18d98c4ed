// API benchmark (issues 3 and 18): one host holding N databases (BENCH_DATABASES, a list: 1000,10000): POST-to-durable
// latency (the create is acknowledged only after its fdatasync), GET /v1/databases and GET /v1/databases/{id} per
// daemon CPU-second, RSS, the document on disk, a restart's load time, and a second host's join time. Prints figures
// and ratios to the targets.
import { readdir, readFile, stat } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { join } from 'node:path'
import { type DaemonProcess, TestCluster, until } from '../../test/helpers/cluster.js'
import { benchSpec, percentile, processCpuSeconds } from './common.js'

const SIZES = (process.env.BENCH_DATABASES ?? '1000,10000').split(',').map(Number)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONCURRENCY = 8

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
  const cpuBefore = await processCpuSeconds(d.pid)
  let done = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < deadline) {
      const url = new URL(path(), d.url)
      const status = await get(agent, url, headers)
      if (status !== expectStatus) throw new Error(`${url.pathname}: ${status}`)
      done++
    }
  }))
  const cpu = await processCpuSeconds(d.pid) - cpuBefore
  agent.destroy()
  return { wall: done / SECONDS, perCore: done / cpu }
}

async function rssMb (d: DaemonProcess): Promise<number> {
  return (await memoryMb(d)).rss
}

/** Resident memory and, of it, Automerge's WebAssembly memory (which never shrinks), from the daemon's metrics. */
async function memoryMb (d: DaemonProcess): Promise<{ rss: number, automerge: number }> {
  const text = await (await fetch(`${d.url}/metrics`)).text()
  const read = (name: string): number => {
    const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text)
    return m === null ? Number.NaN : Number(m[1]) / 1e6
  }
  return { rss: read('pgmesh_process_resident_memory_bytes'), automerge: read('pgmesh_automerge_memory_bytes') }
}

/** Bytes of the host's durable document (the state directory's files). */
async function documentBytes (d: DaemonProcess): Promise<number> {
  const dir = join(d.options.dataDir, 'state')
  let total = 0
  for (const name of await readdir(dir).catch(() => [] as string[])) total += (await stat(join(dir, name))).size
  return total
}

async function listed (d: DaemonProcess): Promise<number> {
  const res = await d.get('/v1/databases')
  return res.status === 200 ? (res.body.databases as unknown[]).length : -1
}

const fmt = (n: number, digits = 1): string => n.toFixed(digits)

/** Idle time before RSS is read again: V8's memory reducer gives a burst's heap back within ~30 s of quiet. */
const SETTLE_MS = 30_000

async function run (databases: number): Promise<void> {
  const cluster = await TestCluster.create('bench-api', { reconcile: false, logLevel: 'warn' })
  try {
    const [h1] = await cluster.initAndJoin(1)
    if (h1 === undefined) throw new Error('no host')
    const idleRss = await rssMb(h1)
    const latencies: number[] = []
    for (let i = 0; i < databases; i++) {
      const t0 = performance.now()
      const res = await h1.post('/v1/databases', { id: `db-${i}`, spec: benchSpec(i) })
      latencies.push(performance.now() - t0)
      if (res.status !== 200) throw new Error(JSON.stringify(res.body))
    }
    const lastHundred = latencies.slice(-100).sort((a, b) => a - b)
    const all = [...latencies].sort((a, b) => a - b)
    console.log(`[${databases}] POST /v1/databases (acknowledged after fdatasync): the last 100 p50 ${fmt(percentile(lastHundred, 0.5))} ms, p99 ${fmt(percentile(lastHundred, 0.99))} ms (${fmt(percentile(lastHundred, 0.99) / 20, 2)}× the 20 ms target); all ${databases}: p99 ${fmt(percentile(all, 0.99))} ms`)
    const sample = await fetch(`${h1.url}/v1/databases`, { headers: { 'accept-encoding': 'identity' } })
    const bytes = (await sample.arrayBuffer()).byteLength
    const etag = sample.headers.get('etag') ?? ''
    const variants: Array<[string, Record<string, string>, number]> = [
      [`identity, ${fmt(bytes / 1024, 0)} KB`, { 'accept-encoding': 'identity' }, 200],
      ['gzip', { 'accept-encoding': 'gzip' }, 200],
      ['If-None-Match, 304', { 'if-none-match': etag }, 304]
    ]
    for (const [label, headers, status] of variants) {
      const list = await throughput(h1, () => '/v1/databases', headers, status)
      console.log(`[${databases}] GET /v1/databases (${label}): ${fmt(list.wall, 0)} requests/s, ${fmt(list.perCore, 0)} per daemon CPU-second (${fmt(list.perCore / 5000, 2)}× the 5,000/s target)`)
    }
    let n = 0
    const one = await throughput(h1, () => `/v1/databases/db-${(n++) % databases}`)
    console.log(`[${databases}] GET /v1/databases/{id}: ${fmt(one.wall, 0)} requests/s, ${fmt(one.perCore, 0)} per daemon CPU-second (${fmt(one.perCore / 5000, 2)}× the 5,000/s target)`)
    const { rss: loadedRss, automerge: createdAutomerge } = await memoryMb(h1)
    const onDisk = await documentBytes(h1)

    // A restart: from the process start to answering /readyz and listing every database.
    await h1.stop()
    const l0 = performance.now()
    await h1.start(false)
    await until('the restarted host to list every database', async () => await listed(h1).catch(() => -1) === databases, 600_000, 50)
    const loadMs = performance.now() - l0
    const restartedRss = await rssMb(h1)

    // A second host joins: from the join request to its answer (it holds the whole document then).
    const token = (await h1.get('/v1/cluster/join-token')).body
    const h2 = await cluster.add('host-2', { logLevel: 'info', logFile: join(cluster.root, 'host-2.log') })
    const j0 = performance.now()
    // Not the helper's 30 s request bound: a join of 10,000 databases takes longer, and how long is the figure.
    const joined = await h2.post('/v1/cluster/join', token, 600_000)
    const joinMs = performance.now() - j0
    if (joined.status !== 204) throw new Error(JSON.stringify(joined.body))
    const joinedCount = await listed(h2)
    if (joinedCount !== databases) throw new Error(`the joined host lists ${joinedCount} databases`)
    const joinedRss = await rssMb(h2)
    console.log(`[${databases}] document on disk ${fmt(onDisk / 1e6, 2)} MB; restart to listing all ${fmt(loadMs, 0)} ms; join ${fmt(joinMs, 0)} ms (${fmt(joinMs / 1000, 2)}× the 1 s target)`)
    console.log(`[${databases}] join, from the joiner's log: ${await joinPhases(join(cluster.root, 'host-2.log'))}`)
    // V8 keeps the garbage of a burst (the first listing, a join) until its memory reducer runs in an idle moment.
    await new Promise(resolve => setTimeout(resolve, SETTLE_MS))
    const [settledH1, settledH2] = [await memoryMb(h1), await memoryMb(h2)]
    console.log(`[${databases}] RSS: idle ${fmt(idleRss)} MB, holding ${databases} ${fmt(loadedRss)} MB (after the requests above), after a restart ${fmt(restartedRss)} MB, joined host ${fmt(joinedRss)} MB (${fmt(Math.max(restartedRss, joinedRss) / 150, 2)}× the 150 MB target); ` +
      `both after ${SETTLE_MS / 1000} s idle: ${fmt(settledH1.rss)} / ${fmt(settledH2.rss)} MB (${fmt(Math.max(settledH1.rss, settledH2.rss) / 150, 2)}×), ` +
      `of which Automerge's WebAssembly memory ${fmt(settledH1.automerge)} / ${fmt(settledH2.automerge)} MB (the creating host's: ${fmt(createdAutomerge)} MB)`)
  } finally {
    await cluster.destroy({ graceful: true })
  }
}

/** Where a join's time went, from the joiner's `joined cluster` log line (milliseconds since the request). */
async function joinPhases (logFile: string): Promise<string> {
  await new Promise(resolve => setTimeout(resolve, 200)) // the line flushed
  const line = (await readFile(logFile, 'utf8')).split('\n').find(l => l.includes('"joined cluster"'))
  if (line === undefined) return 'no "joined cluster" line'
  const r = JSON.parse(line) as { snapshotBytes: number, fetchedMs: number, meshMs: number, convergedMs: number, ms: number }
  return `snapshot ${fmt(r.snapshotBytes / 1e6, 2)} MB fetched and loaded at ${r.fetchedMs} ms, mesh up at ${r.meshMs} ms, ` +
    `converged at ${r.convergedMs} ms, listed by the member at ${r.ms} ms`
}

for (const size of SIZES) await run(size)
