// Swarm benchmark (issue 5): POST-to-available of a 3-node database on the 3-host swarm testbed (one node per
// host, each a Swarm service; target < 15 s, the anchor's own example takes about 30 s), and the time to delete
// it. Then (issue 6) failover on Swarm hosts: a node with a primary and a streaming replica, the primary's host
// killed (its daemon, dockerd and containers SIGKILLed) while a writer inserts; measured from the kill to the first
// write the new primary acknowledges. Each run brings the host back and waits until it follows as a replica.
// Needs root, docker.io and mmdebstrap (scripts/install-deps.sh); tears the testbed down at the end.
import { type DaemonProcess, until } from '../../test/helpers/cluster.js'
import { createHaDatabase, database, primaryOf, waitTask as waitHaTask, writeThroughHostDeath } from '../../test/helpers/ha.js'
import { instanceAdmin, startSwarmTestbed, tb } from '../../test/helpers/swarm-testbed.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

async function waitTask (d: DaemonProcess, id: string, taskId: string): Promise<void> {
  await until(`${id} task ${taskId}`, async () => {
    const t = (await d.get(`/v1/databases/${id}/tasks/${taskId}`)).body
    if (t.status === 'failed') throw new Error(t.error)
    return t.status === 'completed'
  }, 180_000, 20)
}

const setupStarted = performance.now()
const { cluster, hosts } = await startSwarmTestbed('bench-swarm', 3, 3)
console.log(`testbed (3 dockerds in netns, swarm, image, 3 daemons) up in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s`)
try {
  const h1 = hosts[0] as DaemonProcess
  const create: number[] = []
  const remove: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const id = `bench-${run}`
    let started = performance.now()
    const res = await h1.post('/v1/databases', {
      id,
      spec: {
        database_name: 'bench',
        database_users: [{ username: 'app', password: 'bench-password', db_owner: true, attributes: ['LOGIN'] }],
        nodes: [1, 2, 3].map(i => ({ name: `n${i}`, host_ids: [`host-${i}`] }))
      }
    })
    if (res.status !== 200) throw new Error(JSON.stringify(res.body))
    await waitTask(h1, id, res.body.task.task_id)
    create.push(performance.now() - started)
    started = performance.now()
    const del = await h1.request('DELETE', `/v1/databases/${id}`)
    await waitTask(h1, id, del.body.task.task_id)
    remove.push(performance.now() - started)
    console.log(`run ${run + 1}: available after ${(create.at(-1)! / 1000).toFixed(2)} s, deleted after ${(remove.at(-1)! / 1000).toFixed(2)} s`)
  }
  const c = median(create) / 1000
  console.log(`3-node database on 3 swarm hosts, POST-to-available: median ${c.toFixed(2)} s over ${RUNS} runs ` +
    `(min ${(Math.min(...create) / 1000).toFixed(2)}, max ${(Math.max(...create) / 1000).toFixed(2)}); ` +
    `target < 15 s: ${c < 15 ? 'met' : 'NOT met'}; anchor example ~30 s: ${(30 / c).toFixed(1)}x faster`)
  console.log(`delete: median ${(median(remove) / 1000).toFixed(2)} s`)

  const observer = hosts[2] as DaemonProcess
  const ha = await createHaDatabase(h1, async (d, taskId) => await waitHaTask(d, taskId, 180_000), { port: 6432 })
  const first = primaryOf(ha, 'n1')
  if (first === undefined) throw new Error('no primary')
  const ddl = await instanceAdmin(h1, first, 'ha')
  await ddl.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.events (id text PRIMARY KEY, src text); GRANT ALL ON public.events TO admin', '{ddl_sql}')")
  await ddl.end()
  const failovers: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const victimId = primaryOf(await database(observer), 'n1')?.host_id
    const victimIndex = hosts.findIndex(h => h.hostId === victimId)
    const victim = hosts[victimIndex]
    if (victim === undefined) throw new Error('no primary')
    // The replica may take over once the primary counts it as synchronous and the voters know that.
    await until('both n1 instances available', async () => (await database(observer)).instances.filter(i => i.node_name === 'n1' && i.state === 'available').length === 2, 180_000, 250)
    await new Promise(resolve => setTimeout(resolve, 3000))
    const ms = await writeThroughHostDeath(observer, victimId === 'host-1' ? 'host-2' : 'host-1', async () => {
      await victim.stop('SIGKILL')
      await tb('kill-host', String(victimIndex + 1))
    }, `run${run}`)
    failovers.push(ms)
    await tb('start-host', String(victimIndex + 1))
    await victim.start()
    await until(`${victim.hostId} back as a replica`, async () => {
      const back = (await database(observer)).instances.find(i => i.node_name === 'n1' && i.host_id === victim.hostId)
      return back?.postgres?.role === 'replica' && back.state === 'available'
    }, 240_000, 500)
  }
  const f = median(failovers) / 1000
  console.log(`swarm failover (primary's host killed -> new primary acknowledges a write): median ${f.toFixed(2)} s over ${RUNS} runs ` +
    `(min ${(Math.min(...failovers) / 1000).toFixed(2)}, max ${(Math.max(...failovers) / 1000).toFixed(2)}); target < 10 s: ${f < 10 ? 'met' : 'NOT met'}`)
} finally {
  await cluster.destroy()
  await tb('down')
}
