// Write-burst benchmark (issues 16 and 18): BENCH_BURST creates at once against one control-only host, while one
// client times GET /v1/databases/{id} and GET /v1/version back to back. Prints the reads' latency (p50/p99/max,
// against the 100 ms target), how the writes were answered, and how long the burst took. BENCH_LIMITS: a JSON
// `api_limits` object for the daemon's config file (default: the daemon's defaults).
import { createBurst, percentile } from '../../test/helpers/burst.js'
import { TestCluster } from '../../test/helpers/cluster.js'

const BURST = Number(process.env.BENCH_BURST ?? 2000)
const LIMITS = process.env.BENCH_LIMITS

const cluster = await TestCluster.create('bench-burst', { reconcile: false, logLevel: 'warn' })
try {
  const args = LIMITS === undefined ? [] : ['--config', await cluster.writeFile('config.json', JSON.stringify({ api_limits: JSON.parse(LIMITS) }))]
  const [h1] = await cluster.initAndJoin(1, () => ({ args }))
  if (h1 === undefined) throw new Error('no host')
  const probe = await h1.post('/v1/databases', { id: 'probe', spec: { database_name: 'probe', nodes: [{ name: 'n1', host_ids: ['host-1'] }] } })
  if (probe.status !== 200) throw new Error(JSON.stringify(probe.body))
  const result = await createBurst(h1, BURST, ['/v1/databases/probe', '/v1/version'])
  const byStatus: Record<string, number> = {}
  for (const w of result.writes) byStatus[w.status] = (byStatus[w.status] ?? 0) + 1
  console.log(`burst of ${BURST} creates${LIMITS === undefined ? '' : ` (api_limits ${LIMITS})`}: answered in ${(result.burstMs / 1000).toFixed(1)} s, by status ${JSON.stringify(byStatus)}`)
  for (const [path, times] of Object.entries(result.reads)) {
    const p99 = percentile(times, 0.99)
    console.log(`GET ${path} during the burst: ${times.length} reads, p50 ${percentile(times, 0.5).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (${(p99 / 100).toFixed(2)}× the 100 ms target), max ${Math.max(...times).toFixed(1)} ms`)
  }
  console.log(`slowest reads (started ms after the burst began): ${JSON.stringify(result.slowest)}`)
  const errors = [...new Set(result.writes.filter(w => w.error !== undefined).map(w => w.error))]
  if (errors.length > 0) console.log(`writes without an answer: ${errors.join(', ')}`)
  if (result.failedReads.length > 0) console.log(`reads not answered 200: ${JSON.stringify(result.failedReads.slice(0, 10))}`)
} finally {
  await cluster.destroy()
}
