// A host under a burst of thousands of creates (issues 16 and 18): it pushes back with 429/503 and Retry-After
// instead of queueing them all, keeps answering reads and health, and loses no write it acknowledged. The precise
// read latency is measured by scripts/bench/burst.ts; the bound here is lenient because the machine is shared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBurst, percentile } from './helpers/burst.js'
import { type DaemonProcess, TestCluster } from './helpers/cluster.js'

const BURST = 2000
/**
 * Measured by scripts/bench/burst.ts on the 2-core test machine while shared (load average ~10): reads p50 23 ms
 * (version) and 106 ms (one database), p99 225-350 ms, the slowest 2-3 s in the first seconds, while 2,000 new
 * connections are accepted and answered at once. Without the limits, the same burst kept reads waiting for minutes
 * (issue 18). The bounds leave room for a busier machine and still fail if reads queue behind the burst.
 */
const READ_P50_BOUND_MS = 1000
const READ_P99_BOUND_MS = 8000

describe('a burst of creates against one host', () => {
  let cluster: TestCluster
  let h1: DaemonProcess

  beforeAll(async () => {
    cluster = await TestCluster.create('api-limits', { reconcile: false, logLevel: 'warn' })
    ;[h1] = await cluster.initAndJoin(1) as [DaemonProcess]
    expect((await h1.post('/v1/databases', { id: 'probe', spec: { database_name: 'probe', nodes: [{ name: 'n1', host_ids: ['host-1'] }] } })).status).toBe(200)
  })

  afterAll(async () => { await cluster.destroy() })

  it('answers every read quickly, refuses writes only with 429/503 and Retry-After, and keeps every accepted one', async () => {
    const result = await createBurst(h1, BURST, ['/v1/databases/probe', '/v1/version'])
    const accepted = result.writes.filter(w => w.status === 200)
    const refused = result.writes.filter(w => w.status !== 200)
    const byStatus: Record<string, number> = {}
    for (const w of result.writes) byStatus[w.status] = (byStatus[w.status] ?? 0) + 1
    const reads = Object.values(result.reads).flat()
    const summary = `writes by status ${JSON.stringify(byStatus)}, ` +
      `slowest reads ${JSON.stringify(result.slowest)}, ${reads.length} reads, p50 ${percentile(reads, 0.5).toFixed(1)} ms, p99 ${percentile(reads, 0.99).toFixed(1)} ms, max ${Math.max(...reads).toFixed(1)} ms, burst ${result.burstMs.toFixed(0)} ms`
    console.log(summary)
    expect(result.failedReads, summary).toEqual([])
    // Reads ran during the burst (a few rounds: how many depends on how long the burst lasts, ~3 s here).
    expect(reads.length, summary).toBeGreaterThanOrEqual(6)
    expect(percentile(reads, 0.5), summary).toBeLessThan(READ_P50_BOUND_MS)
    expect(percentile(reads, 0.99), summary).toBeLessThan(READ_P99_BOUND_MS)
    expect(accepted.length, summary).toBeGreaterThan(0)
    expect(refused.length, summary).toBeGreaterThan(0)
    for (const w of refused) {
      expect([429, 503], JSON.stringify(w)).toContain(w.status)
      expect(w.name).toBe(w.status === 429 ? 'too_many_requests' : 'server_busy')
      expect(Number(w.retryAfter)).toBeGreaterThanOrEqual(1)
    }
    const listed = new Set(((await h1.get<{ databases: Array<{ id: string }> }>('/v1/databases')).body.databases).map(db => db.id))
    expect(accepted.filter(w => !listed.has(w.id))).toEqual([])
    expect(refused.filter(w => listed.has(w.id))).toEqual([])
  }, 180_000)
})
