// An image upgrade on a real Docker Swarm (scripts/testbed/tb.sh, 3 hosts, all managers): a 3-node database on the
// version manifest's first testbed tag (Debian bookworm's point release, PostgreSQL 15.18) is moved by
// POST /v1/databases/{id}/upgrade to the second (15.20 plus procps) while a client writes, and every instance ends on
// the new image with replication working both ways. A client on every node writes every 25 ms: the roll restarts one
// instance at a time, so two nodes never refuse writes at once.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, type TestCluster, until } from './helpers/cluster.js'
import { NodeProbe, overlappingOutages } from './helpers/probes.js'
import { docker, importImageVariant, instanceAdmin, queryNode, startSwarmTestbed, stopSwarmTestbed, UPGRADE_IMAGES } from './helpers/swarm-testbed.js'

const PASSWORD = 'app-password'
const { from: FROM, to: TO } = UPGRADE_IMAGES

type Instance = { id: string, node_name: string, host_id: string, state: string, postgres?: { version?: string }, connection_info?: { addresses: string[], port: number } }
type Db = { state: string, spec: Record<string, any>, instances: Instance[], available_upgrades?: Array<{ postgres_version: string, image: string }> }

let cluster: TestCluster | undefined
let hosts: DaemonProcess[] = []

async function waitTask (d: DaemonProcess, databaseId: string, taskId: string, timeoutMs = 120_000): Promise<void> {
  let failed: string | undefined
  await until(`task ${taskId} to finish`, async () => {
    const t = (await d.get(`/v1/databases/${databaseId}/tasks/${taskId}`)).body
    if (t.status === 'failed' || t.status === 'canceled') failed = `task ${t.status as string}: ${t.error as string}`
    return t.status === 'completed' || failed !== undefined
  }, timeoutMs, 250).catch((err: Error) => { failed ??= err.message })
  if (failed !== undefined) {
    const log = (await d.get(`/v1/databases/${databaseId}/tasks/${taskId}/log`)).body
    const lines = (log.entries as Array<{ timestamp: string, message: string, fields: { host_id: string } }>).map(e => `${e.timestamp} ${e.fields.host_id} ${e.message}`)
    const instances = (await d.get(`/v1/databases/${databaseId}`)).body.instances
    throw new Error(`${failed}\n${lines.join('\n')}\n${JSON.stringify(instances)}\n${cluster?.problems() ?? ''}`)
  }
}

async function database (d: DaemonProcess = hosts[0] as DaemonProcess, query = ''): Promise<Db> {
  return (await d.get(`/v1/databases/app${query}`)).body
}

async function query (db: Db, node: string, sql: string, values: unknown[] = []): Promise<any[]> {
  return await queryNode(db, node, { user: 'admin', password: PASSWORD, database: 'app' }, sql, values)
}

/** Until every listed node has every row. */
async function replicated (db: Db, nodes: string[], ids: string[], timeoutMs = 60_000): Promise<void> {
  await until(`${ids.length} rows on ${nodes.join(', ')}`, async () => {
    for (const node of nodes) {
      const [row] = await query(db, node, 'SELECT count(*)::int AS n FROM items WHERE id = ANY($1)', [ids])
      if (row.n !== ids.length) return false
    }
    return true
  }, timeoutMs, 250)
}

describe('image upgrade on a 3-host swarm', () => {
  beforeAll(async () => {
    ;({ cluster, hosts } = await startSwarmTestbed('swarm-upgrade', 3, 3))
    await importImageVariant(FROM)
    await importImageVariant(TO)
  }, 900_000)

  afterEach((context) => {
    if (context.task.result?.state === 'fail') console.log(cluster?.problems())
  })

  afterAll(async () => {
    expect(await stopSwarmTestbed(cluster)).toEqual({ netns: [], dockerds: [], cgroups: [], paths: [] })
  }, 120_000)

  it(`creates a 3-node database on ${FROM.tag}, which offers ${TO.tag} as an upgrade`, { timeout: 240_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    const res = await h1.post('/v1/databases', {
      id: 'app',
      spec: {
        database_name: 'app',
        postgres_version: FROM.minor,
        port: 6432,
        orchestrator_opts: { swarm: { image: FROM.tag } },
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }]
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h1, 'app', res.body.task.task_id, 180_000)
    const db = await database(h1, '?include=available_upgrades')
    expect(db.state).toBe('available')
    expect(db.instances.map(i => i.postgres?.version)).toEqual([FROM.minor, FROM.minor, FROM.minor])
    expect(db.available_upgrades).toContainEqual({ postgres_version: TO.minor, image: TO.tag })
    // The old image lacks the package the new one adds: after the upgrade, its presence proves the new container.
    const n1Container = await docker(1, 'ps', '-q', '--filter', `label=com.docker.swarm.service.name=postgres-${db.instances.find(i => i.node_name === 'n1')?.id ?? ''}`)
    expect(await docker(1, 'exec', n1Container, 'sh', '-c', 'command -v ps || echo none')).toBe('none')

    // The table reaches every node through pglogical, as the control plane's superuser over n1's socket.
    const n1 = db.instances.find(i => i.node_name === 'n1') as Instance
    const admin = await instanceAdmin(h1, n1, 'app')
    await admin.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.items (id text PRIMARY KEY, origin text); GRANT ALL ON public.items TO admin', '{ddl_sql}')")
    await admin.end()
    await until('table on every node', async () => {
      for (const node of ['n1', 'n2', 'n3']) if ((await query(db, node, "SELECT to_regclass('public.items') AS t"))[0].t === null) return false
      return true
    }, 30_000, 200)
    for (const node of ['n1', 'n2', 'n3']) await query(db, node, 'INSERT INTO items VALUES ($1, $2)', [`before-${node}`, node])
    await replicated(db, ['n1', 'n2', 'n3'], ['before-n1', 'before-n2', 'before-n3'])
  })

  it(`upgrades it to ${TO.tag} under a writer: every instance on the new image, replication both ways`, { timeout: 600_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    const probes = ['n1', 'n2', 'n3'].map(node => new NodeProbe(h1, 'app', node, { user: 'admin', password: PASSWORD, database: 'app' }, 'items'))
    for (const p of probes) p.start()
    await until('every probe writes', () => probes.every(p => p.acknowledged.length >= 10), 30_000, 100)
    const res = await h1.post('/v1/databases/app/upgrade', { image: TO.tag })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    expect(res.body.task.type).toBe('upgrade')
    const started = Date.now()
    await waitTask(h1, 'app', res.body.task.task_id, 480_000)
    const upgradeMs = Date.now() - started
    // Every instance reports the new server version (its heartbeat follows the restart).
    const db = await until('every instance on the new minor', async () => {
      const d = await database(h1, '?include=available_upgrades')
      return d.instances.every(i => i.state === 'available' && i.postgres?.version === TO.minor) ? d : undefined
    }, 120_000, 500)
    await new Promise(resolve => setTimeout(resolve, 2000))
    for (const p of probes) await p.stop()
    console.log(`upgrade ${FROM.tag} -> ${TO.tag}: task ${upgradeMs} ms; longest write outage per node: ${probes.map(p => `${p.node} ${p.longestMs()} ms`).join(', ')}`)
    expect(overlappingOutages(probes.flatMap(p => p.outages))).toEqual([])

    expect(db.spec).toMatchObject({ postgres_version: TO.minor, orchestrator_opts: { swarm: { image: TO.tag } } })
    expect(db.available_upgrades).toBeUndefined()
    for (const [index, instance] of [...db.instances].sort((a, b) => a.node_name.localeCompare(b.node_name)).entries()) {
      const host = index + 1
      const service = JSON.parse(await docker(1, 'service', 'inspect', `postgres-${instance.id}`))[0]
      expect(service.Spec.TaskTemplate.ContainerSpec.Image).toMatch(/^pgmesh\/postgres:15\.20(@|$)/)
      // The running container is the new image's: it has the package the old one lacks, and the new server.
      const containerId = await docker(host, 'ps', '-q', '--filter', `label=com.docker.swarm.service.name=postgres-${instance.id}`)
      expect(containerId).not.toBe('')
      expect(await docker(host, 'exec', containerId, 'sh', '-c', 'command -v ps || echo none')).toMatch(/\/ps$/)
      const [{ server_version: serverVersion }] = await query(db, instance.node_name, 'SHOW server_version')
      expect(serverVersion).toMatch(/^15\.20\b/)
    }

    // Every row the probes wrote reached every other node, and each node's writes reach the others.
    for (const p of probes) {
      expect(p.acknowledged.length).toBeGreaterThan(0)
      await replicated(db, ['n1', 'n2', 'n3'].filter(n => n !== p.node), p.acknowledged, 120_000)
    }
    for (const node of ['n1', 'n2', 'n3']) await query(db, node, 'INSERT INTO items VALUES ($1, $2)', [`after-${node}`, node])
    await replicated(db, ['n1', 'n2', 'n3'], ['after-n1', 'after-n2', 'after-n3'])
  })
})
