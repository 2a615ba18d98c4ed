// Databases benchmark (issue 4): POST-to-available for a 1-node and a 3-node database on one machine (three hosts
// on loopback, process orchestrator), and replication lag under a steady insert load. Prints figures and ratios.
import pg from 'pg'
import { type DaemonProcess, TestCluster, until } from '../../test/helpers/cluster.js'
import { percentile } from './common.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const LAG_ROWS = Number(process.env.BENCH_LAG_ROWS ?? 500)

async function createAndWait (d: DaemonProcess, id: string, nodes: number): Promise<number> {
  const started = performance.now()
  const res = await d.post('/v1/databases', {
    id,
    spec: { database_name: 'bench', nodes: Array.from({ length: nodes }, (_, i) => ({ name: `n${i + 1}`, host_ids: [`host-${i + 1}`] })) }
  })
  if (res.status !== 200) throw new Error(JSON.stringify(res.body))
  await until(`${id} available`, async () => {
    const t = (await d.get(`/v1/databases/${id}/tasks/${res.body.task.task_id as string}`)).body
    if (t.status === 'failed') throw new Error(t.error)
    return t.status === 'completed'
  }, 120_000, 20)
  return performance.now() - started
}

async function deleteAndWait (d: DaemonProcess, id: string): Promise<void> {
  await d.request('DELETE', `/v1/databases/${id}`)
  await until(`${id} deleted`, async () => (await d.get(`/v1/databases/${id}`)).status === 404, 60_000, 50)
}

async function superuser (d: DaemonProcess, id: string, node: string): Promise<pg.Client> {
  const db = (await d.get(`/v1/databases/${id}`)).body as { instances: Array<{ node_name: string, connection_info: { addresses: string[], port: number } }> }
  const info = db.instances.find(i => i.node_name === node)?.connection_info
  const c = new pg.Client({ host: info?.addresses[0], port: info?.port, user: 'pgmesh', password: await d.superuserPassword(), database: 'bench' })
  await c.connect()
  return c
}

const cluster = await TestCluster.create('bench-db')
try {
  const hosts = await cluster.initAndJoin(3)
  const h1 = hosts[0] as DaemonProcess
  for (const nodes of [1, 3]) {
    const times: number[] = []
    for (let run = 0; run < RUNS; run++) {
      const id = `bench-${nodes}-${run}`
      times.push(await createAndWait(h1, id, nodes))
      await deleteAndWait(h1, id)
    }
    times.sort((a, b) => a - b)
    const median = percentile(times, 0.5)
    console.log(`POST-to-available, ${nodes}-node database: median ${(median / 1000).toFixed(2)} s over ${RUNS} runs (min ${((times[0] ?? 0) / 1000).toFixed(2)} s)` +
      (nodes === 3 ? `; ${(median / 5000).toFixed(2)}× the 5 s target, ${(30_000 / median).toFixed(1)}× faster than the anchor's ~30 s` : ''))
  }

  // Lag: an AFTER INSERT trigger that fires for replicated rows too stamps the arrival time on each node.
  await createAndWait(h1, 'lag', 3)
  const nodes = await Promise.all(['n1', 'n2', 'n3'].map(async n => await superuser(h1, 'lag', n)))
  const [n1] = nodes as [pg.Client]
  await n1.query(`SELECT pglogical.replicate_ddl_command($$
    CREATE TABLE public.probe (id int PRIMARY KEY, sent_at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE TABLE public.arrivals (id int PRIMARY KEY, lag_ms double precision);
    CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS $f$
      BEGIN INSERT INTO public.arrivals VALUES (NEW.id, extract(epoch FROM clock_timestamp() - NEW.sent_at) * 1000) ON CONFLICT DO NOTHING; RETURN NEW; END $f$;
    CREATE TRIGGER stamp AFTER INSERT ON public.probe FOR EACH ROW EXECUTE FUNCTION public.stamp();
    ALTER TABLE public.probe ENABLE ALWAYS TRIGGER stamp;$$, '{ddl_sql}')`)
  // arrivals is filled locally on each node: keep it out of replication.
  for (const c of nodes) {
    await until('probe table', async () => (await c.query("SELECT to_regclass('public.arrivals') AS t")).rows[0].t !== null, 20_000)
    await c.query("SELECT pglogical.replication_set_remove_table(set_name, 'public.arrivals') FROM pglogical.tables WHERE relid = 'public.arrivals'::regclass AND set_name IS NOT NULL")
  }
  for (let i = 0; i < LAG_ROWS; i++) {
    await n1.query('INSERT INTO probe (id) VALUES ($1)', [i])
    await new Promise(r => setTimeout(r, 5))
  }
  const lags: number[] = []
  for (const c of nodes.slice(1)) {
    await until('all rows arrived', async () => Number((await c.query('SELECT count(*) FROM arrivals')).rows[0].count) === LAG_ROWS, 30_000)
    lags.push(...(await c.query('SELECT lag_ms FROM arrivals')).rows.map(r => Number(r.lag_ms)))
  }
  lags.sort((a, b) => a - b)
  console.log(`replication lag n1 → n2, n3 at ~200 inserts/s: median ${percentile(lags, 0.5).toFixed(2)} ms, p99 ${percentile(lags, 0.99).toFixed(2)} ms, max ${(lags.at(-1) ?? 0).toFixed(2)} ms over ${lags.length} arrivals`)
  for (const c of nodes) await c.end()
} finally {
  await cluster.destroy()
}
