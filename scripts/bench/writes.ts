// Write-path benchmark (issue 18): one host filled with N databases (BENCH_DATABASES, default 2500) by a few concurrent
// clients, then BENCH_POSTS (default 100) POSTs measured, serially and then by 4 concurrent clients: latency to
// durable p50/p99 and the daemon's CPU ms per POST. Cheaper than bench:api for watching how the per-write cost grows with N (set PGMESH_DAEMON_NODE_ARGS to
// profile the daemon). BENCH_COMPARE_BIN, another build's cmd/pgmesh/bin/pgmesh.mjs: after the fill the host is
// restarted on each build in turn (this one, that one, this one again) and the serial POSTs measured on each, so two
// builds are compared on the same document without filling it twice. Only builds that read the document's format
// compare so (not one from before bucketed collections: run it apart with PGMESH_DAEMON_BIN, which fills its own).
import { type DaemonProcess, TestCluster } from '../../test/helpers/cluster.js'
import { benchSpec, percentile, processCpuSeconds } from './common.js'

const DATABASES = Number(process.env.BENCH_DATABASES ?? 2500)
const POSTS = Number(process.env.BENCH_POSTS ?? 100)
const COMPARE_BIN = process.env.BENCH_COMPARE_BIN
const FILL_CLIENTS = 4

async function create (d: DaemonProcess, id: string, i: number): Promise<void> {
  const res = await d.post('/v1/databases', { id, spec: benchSpec(i) })
  if (res.status !== 200) throw new Error(JSON.stringify(res.body))
}

/** POSTS creates by `clients` concurrent clients; `label` names the build. */
async function measure (d: DaemonProcess, label: string, round: number, clients: number): Promise<void> {
  const latencies: number[] = []
  const cpu0 = 1000 * await processCpuSeconds(d.pid)
  let next = 0
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < POSTS) {
      const i = next++
      const t0 = performance.now()
      await create(d, `r${round}-${clients}-${i}`, DATABASES + i)
      latencies.push(performance.now() - t0)
    }
  }))
  const cpu = 1000 * await processCpuSeconds(d.pid) - cpu0
  const sorted = [...latencies].sort((a, b) => a - b)
  const mean = latencies.reduce((a, b) => a + b, 0) / latencies.length
  console.log(`[${DATABASES}${label}] ${POSTS} POSTs to durable, ${clients === 1 ? 'serial' : `${clients} concurrent clients`}: p50 ${percentile(sorted, 0.5).toFixed(1)} ms, ` +
    `p99 ${percentile(sorted, 0.99).toFixed(1)} ms, mean ${mean.toFixed(1)} ms; daemon CPU ${(cpu / POSTS).toFixed(1)} ms per POST`)
}

async function measureBoth (d: DaemonProcess, label: string, round: number): Promise<void> {
  await measure(d, label, round, 1)
  await measure(d, label, round, FILL_CLIENTS)
}

const cluster = await TestCluster.create('bench-writes', { reconcile: false, logLevel: 'warn', readyTimeoutMs: 300_000 })
try {
  const [h1] = await cluster.initAndJoin(1)
  if (h1 === undefined) throw new Error('no host')
  const f0 = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: FILL_CLIENTS }, async () => {
    while (next < DATABASES) { const i = next++; await create(h1, `db-${i}`, i) }
  }))
  console.log(`[${DATABASES}] filled by ${FILL_CLIENTS} concurrent clients in ${((performance.now() - f0) / 1000).toFixed(1)} s`)
  if (COMPARE_BIN === undefined) {
    await measureBoth(h1, '', 0)
  } else {
    const builds: Array<[string, string | undefined]> = [[' this build', undefined], [` ${COMPARE_BIN}`, COMPARE_BIN], [' this build', undefined]]
    for (const [round, [label, bin]] of builds.entries()) {
      await h1.stop()
      if (bin === undefined) delete process.env.PGMESH_DAEMON_BIN
      else process.env.PGMESH_DAEMON_BIN = bin
      await h1.start()
      // Unmeasured: the first requests after a start also compile code and load what a restart left cold.
      for (let i = 0; i < 10; i++) await create(h1, `w${round}-${i}`, i)
      await measureBoth(h1, `,${label}, restarted`, round)
    }
    delete process.env.PGMESH_DAEMON_BIN
  }
} finally {
  await cluster.destroy({ graceful: true })
}
