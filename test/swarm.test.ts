// The swarm orchestrator on a real multi-host Docker Swarm: 4 hosts on this machine, each a network namespace with its
// own dockerd (hosts 1-3 swarm managers, host 4 a worker) and its own pgmesh daemon inside (scripts/testbed/tb.sh).
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, type TestCluster, until } from './helpers/cluster.js'
import { connectNode, docker, hostAddress, instanceAdmin, queryNode, startSwarmTestbed, stopSwarmTestbed, tb } from './helpers/swarm-testbed.js'

const execFileAsync = promisify(execFile)
const PASSWORD = 'app-password'

type Instance = { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number } }
type Db = { state: string, spec: Record<string, any>, instances: Instance[] }

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

async function update (d: DaemonProcess, edit: (spec: Record<string, any>) => void): Promise<void> {
  const spec = (await d.get('/v1/databases/app')).body.spec
  edit(spec)
  const res = await d.post('/v1/databases/app', { spec })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
  await waitTask(d, 'app', res.body.task.task_id)
}

async function database (d: DaemonProcess = hosts[0] as DaemonProcess): Promise<Db> {
  return (await d.get('/v1/databases/app')).body
}

/** The app user over TCP from the root namespace (not a peer address: a password is required). */
async function connect (db: Db, node: string, user = 'admin', password: string | undefined = PASSWORD): Promise<pg.Client> {
  return await connectNode(db, node, { user, password, database: 'app' })
}

async function query (db: Db, node: string, sql: string, values: unknown[] = []): Promise<any[]> {
  return await queryNode(db, node, { user: 'admin', password: PASSWORD, database: 'app' }, sql, values)
}


async function inspectJson (host: number, kind: 'service' | 'network' | 'container', name: string): Promise<any> {
  return JSON.parse(await docker(host, kind, 'inspect', name))[0]
}

/** Until every listed node has the row. */
async function replicated (db: Db, nodes: string[], id: string, timeoutMs = 30_000): Promise<void> {
  await until(`row ${id} on ${nodes.join(', ')}`, async () => {
    for (const node of nodes) if ((await query(db, node, 'SELECT 1 FROM items WHERE id = $1', [id])).length !== 1) return false
    return true
  }, timeoutMs, 200)
}

/** An API call from inside a host's namespace (reaches that host while it is cut off from the test's namespace). */
async function requestInside (host: number, method: string, path: string, body?: unknown): Promise<any> {
  const script = `fetch(process.argv[1], { method: process.argv[2], headers: { 'content-type': 'application/json' }, body: process.argv[3] || undefined,
    signal: AbortSignal.timeout(20000) }).then(r => r.text()).then(t => { process.stdout.write(t) })`
  const args = ['netns', 'exec', `tbh${host}`, process.execPath, '-e', script, `http://${hostAddress(host)}:3000${path}`, method, body === undefined ? '' : JSON.stringify(body)]
  return JSON.parse((await execFileAsync('ip', args)).stdout)
}

describe('swarm orchestrator on a 4-host swarm (3 managers, 1 worker)', () => {
  beforeAll(async () => {
    ;({ cluster, hosts } = await startSwarmTestbed('swarm', 4, 3))
  }, 300_000)

  afterEach((context) => {
    if (context.task.result?.state === 'fail') console.log(cluster?.problems())
  })

  afterAll(async () => {
    expect(await stopSwarmTestbed(cluster)).toEqual({ netns: [], dockerds: [], cgroups: [], paths: [] })
  }, 120_000)

  it('creates a 3-node database, one node per host, as pinned services on a per-database overlay', { timeout: 180_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    // Every host reports its Docker and Swarm state as the anchor's `docker` component: managers and the worker.
    await until('docker components everywhere', async () => {
      const listed = (await h1.get('/v1/hosts')).body.hosts as Array<{ id: string, status: { components: Record<string, { healthy: boolean, details?: { swarm?: { control_available?: boolean } } }> } }>
      const docker = new Map(listed.map(h => [h.id, h.status.components.docker]))
      return ['host-1', 'host-2', 'host-3', 'host-4'].every(id => docker.get(id)?.healthy === true) &&
        docker.get('host-1')?.details?.swarm?.control_available === true && docker.get('host-4')?.details?.swarm?.control_available === false
    }, 30_000, 500)
    const res = await h1.post('/v1/databases', {
      id: 'app',
      spec: {
        database_name: 'app',
        port: 6432,
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }]
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h1, 'app', res.body.task.task_id)
    const db = await database()
    expect(db.state).toBe('available')

    const nodeIds = await Promise.all([1, 2, 3].map(async i => (await docker(i, 'info', '--format', '{{.Swarm.NodeID}}'))))
    for (const [index, instance] of [...db.instances].sort((a, b) => a.node_name.localeCompare(b.node_name)).entries()) {
      const i = index + 1
      const service = await inspectJson(1, 'service', `postgres-${instance.id}`)
      expect(service.Spec.Labels).toMatchObject({
        'pgedge.host.id': `host-${i}`, 'pgedge.database.id': 'app', 'pgedge.instance.id': instance.id, 'pgedge.node.name': `n${i}`, 'pgedge.component': 'postgres'
      })
      expect(service.Spec.TaskTemplate.Placement.Constraints).toEqual([`node.id==${nodeIds[index] ?? ''}`])
      expect(service.Spec.EndpointSpec).toMatchObject({ Mode: 'dnsrr', Ports: [{ PublishedPort: 6432, PublishMode: 'host' }] })
      expect(service.Spec.TaskTemplate.ContainerSpec.Healthcheck.Test[0]).toBe('CMD-SHELL')
      const dataMount = service.Spec.TaskTemplate.ContainerSpec.Mounts.find((m: { Target: string }) => m.Target === '/var/lib/pgmesh/data')
      expect(dataMount.Source).toBe(`${hosts[index]?.options.dataDir ?? ''}/instances/${instance.id}/data`)
      // The task runs on its own host's dockerd, and Docker reports it healthy.
      const containerId = await docker(i, 'ps', '-q', '--filter', `label=com.docker.swarm.service.name=postgres-${instance.id}`)
      expect(containerId).not.toBe('')
      await until(`${instance.id} healthy`, async () => (await inspectJson(i, 'container', containerId)).State.Health.Status === 'healthy', 30_000, 500)
    }
    const network = await inspectJson(1, 'network', 'app-database')
    expect(network).toMatchObject({ Driver: 'overlay', Attachable: true, Scope: 'swarm' })
  })

  it('replicates rows across hosts; the admin user needs its password, the control plane user is refused from a non-peer', { timeout: 120_000 }, async () => {
    const db = await database()
    await expect(connect(db, 'n1', 'admin', 'wrong')).rejects.toThrow(/password authentication failed/)
    await expect(connect(db, 'n1', 'pgmesh', undefined)).rejects.toThrow()
    // The image's server (Debian's newest minor, 15.19+) refuses output plugins it does not list; the orchestrator
    // learnt that it has the setting and lists pglogical's. Only a superuser may read it: node n<i> is on host-<i>.
    for (const [index, host] of hosts.slice(0, 3).entries()) {
      const superuser = await instanceAdmin(host, db.instances.find(i => i.node_name === `n${index + 1}`) as Instance, 'postgres')
      try {
        expect((await superuser.query('SHOW output_plugin_libraries')).rows[0].output_plugin_libraries).toBe('pgoutput, test_decoding, pglogical_output')
      } finally {
        await superuser.end()
      }
    }
    // DDL goes through the replication extension, as the control plane's superuser over n1's socket on host-1.
    const n1 = db.instances.find(i => i.node_name === 'n1') as Instance
    const admin = new pg.Client({ host: `${hosts[0]?.options.dataDir ?? ''}/instances/${n1.id}/run`, port: n1.connection_info?.port, user: 'pgmesh', database: 'app' })
    await admin.connect()
    await admin.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.items (id text PRIMARY KEY, origin text); GRANT ALL ON public.items TO admin', '{ddl_sql}')")
    await admin.end()
    await until('table on every node', async () => {
      for (const node of ['n1', 'n2', 'n3']) if ((await query(db, node, "SELECT to_regclass('public.items') AS t"))[0].t === null) return false
      return true
    }, 30_000, 200)
    for (const node of ['n1', 'n2', 'n3']) await query(db, node, 'INSERT INTO items VALUES ($1, $2)', [`row-${node}`, node])
    for (const node of ['n1', 'n2', 'n3']) await replicated(db, ['n1', 'n2', 'n3'], `row-${node}`)
  })

  it('updates postgresql_conf (reload keeps the container, a restart-only setting replaces it) and a port', { timeout: 240_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    let db = await database()
    const startTimes = async (): Promise<string[]> => await Promise.all(['n1', 'n2', 'n3'].map(async n =>
      (await query(db, n, 'SELECT pg_postmaster_start_time()::text AS t'))[0].t as string))
    const before = await startTimes()
    await update(h1, spec => { spec.postgresql_conf = { work_mem: '7MB' } })
    for (const n of ['n1', 'n2', 'n3']) expect((await query(db, n, 'SHOW work_mem'))[0].work_mem).toBe('7MB')
    expect(await startTimes()).toEqual(before)

    await update(h1, spec => { spec.postgresql_conf = { work_mem: '7MB', max_connections: 150 } })
    for (const n of ['n1', 'n2', 'n3']) expect((await query(db, n, 'SHOW max_connections'))[0].max_connections).toBe('150')
    const restarted = await startTimes()
    restarted.forEach((t, i) => { expect(t).not.toBe(before[i]) })

    await update(h1, spec => { spec.nodes[0].port = 6433 })
    db = await database()
    const n1 = db.instances.find(i => i.node_name === 'n1')
    expect(n1?.connection_info?.port).toBe(6433)
    const service = await inspectJson(1, 'service', `postgres-${n1?.id ?? ''}`)
    expect(service.Spec.EndpointSpec.Ports[0].PublishedPort).toBe(6433)
    await query(db, 'n2', "INSERT INTO items VALUES ('after-port-change', 'n2')")
    await replicated(db, ['n1', 'n2', 'n3'], 'after-port-change')
  })

  it('adds a node on the worker host as a plain container, copies the data to it, and removes it again', { timeout: 240_000 }, async () => {
    const [h1, , , h4] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess, DaemonProcess]
    expect(await docker(4, 'info', '--format', '{{.Swarm.ControlAvailable}}')).toBe('false')
    await update(h1, spec => { spec.nodes.push({ name: 'n4', host_ids: ['host-4'] }) })
    let db = await database()
    const n4 = db.instances.find(i => i.node_name === 'n4') as Instance
    expect(await docker(1, 'service', 'ls', '-q', '--filter', `name=postgres-${n4.id}`)).toBe('')
    const container = await inspectJson(4, 'container', `postgres-${n4.id}`)
    expect(container.HostConfig.RestartPolicy.Name).toBe('unless-stopped')
    expect(Object.keys(container.NetworkSettings.Networks)).toEqual(['app-database'])
    expect(container.Config.Labels['pgedge.host.id']).toBe('host-4')
    // The rows written before the node existed were copied, and it takes part in the mesh both ways.
    await replicated(db, ['n4'], 'row-n1')
    await query(db, 'n4', "INSERT INTO items VALUES ('from-n4', 'n4')")
    await replicated(db, ['n1', 'n2', 'n3'], 'from-n4')

    await update(h1, spec => { spec.nodes = spec.nodes.filter((n: { name: string }) => n.name !== 'n4') })
    db = await database()
    expect(db.instances.map(i => i.node_name).sort()).toEqual(['n1', 'n2', 'n3'])
    expect(await docker(4, 'ps', '-aq', '--filter', `name=postgres-${n4.id}`)).toBe('')
    expect(await readdir(`${h4.options.dataDir}/instances`)).toEqual([])
  })

  it("keeps the other hosts' databases working while one host's dockerd is stopped, and catches up after", { timeout: 300_000 }, async () => {
    const db = await database()
    await tb('stop-host', '3')
    try {
      // Host 3 reports its instance from what Docker (unreachable) and Postgres (gone) say.
      await until('n3 reported down', async () => (await database()).instances.find(i => i.node_name === 'n3')?.state !== 'available', 30_000, 500)
      // ... and its docker component, so every host shows it degraded (a dockerd on its way down first reports its
      // swarm node inactive, then nothing).
      const degraded = await until('host-3 degraded, docker unreachable', async () => {
        const h = (await hosts[0]!.get('/v1/hosts/host-3')).body
        return h.status?.state === 'degraded' && /docker is not reachable/.test(h.status.components.docker?.error ?? '') ? h : undefined
      }, 30_000, 500)
      expect(degraded.status.components.docker.healthy).toBe(false)
      await query(db, 'n1', "INSERT INTO items VALUES ('while-docker-3-down', 'n1')")
      await replicated(db, ['n1', 'n2'], 'while-docker-3-down')
    } finally {
      await tb('start-host', '3')
    }
    // The restarted dockerd rejoins the swarm first; under load that has taken over a minute.
    let n3: unknown
    await until('n3 available again', async () => {
      n3 = (await database()).instances.find(i => i.node_name === 'n3')
      return (n3 as Instance | undefined)?.state === 'available'
    }, 150_000, 500).catch((err: Error) => { throw new Error(`${err.message}; n3 is ${JSON.stringify(n3)}`) })
    await replicated(db, ['n3'], 'while-docker-3-down', 60_000)
  })

  it('keeps working on both sides of a network partition, merges specs edited on both sides, and the cut-off host follows', { timeout: 300_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    const db = await database()
    const n3 = db.instances.find(i => i.node_name === 'n3') as Instance
    await tb('partition', '3')
    try {
      // Side A (hosts 1 and 2, a swarm quorum): a setting and a label, which replaces its tasks.
      const specA = (await h1.get('/v1/databases/app')).body.spec
      specA.postgresql_conf.work_mem = '12MB'
      specA.orchestrator_opts = { swarm: { extra_labels: { tier: 'gold' } } }
      const resA = await h1.post('/v1/databases/app', { spec: specA })
      expect(resA.status, JSON.stringify(resA.body)).toBe(200)
      // Side B (host 3 alone): another setting, through its own API.
      const specB = (await requestInside(3, 'GET', '/v1/databases/app')).spec
      specB.postgresql_conf.statement_timeout = '42s'
      const resB = await requestInside(3, 'POST', '/v1/databases/app', { spec: specB })
      expect(resB.task?.task_id, JSON.stringify(resB)).toBeDefined()

      await until('side A applied its edit', async () => {
        const services = await Promise.all([1, 2].map(async i => {
          const instance = db.instances.find(x => x.node_name === `n${i}`) as Instance
          return (await inspectJson(1, 'service', `postgres-${instance.id}`)).Spec.Labels.tier
        }))
        return services.every(t => t === 'gold')
      }, 90_000, 500)
      await until('n1 and n2 replicate during the partition', async () => {
        await query(db, 'n1', "INSERT INTO items VALUES ('during-partition', 'n1') ON CONFLICT DO NOTHING")
        await replicated(db, ['n2'], 'during-partition', 5_000)
        return true
      }, 60_000, 500)
    } finally {
      await tb('heal', '3')
    }
    await until('host-3 follows the merged spec', async () => {
      const service = await inspectJson(1, 'service', `postgres-${n3.id}`)
      if (service.Spec.Labels.tier !== 'gold') return false
      const [settings] = await query(await database(), 'n3', "SELECT current_setting('work_mem') AS w, current_setting('statement_timeout') AS s")
      return settings.w === '12MB' && settings.s === '42s'
    }, 180_000, 1000)
    const merged = (await database()).spec.postgresql_conf
    expect(merged).toMatchObject({ work_mem: '12MB', statement_timeout: '42s' })
    for (const n of ['n1', 'n2']) expect((await query(db, n, 'SHOW statement_timeout'))[0].statement_timeout).toBe('42s')
    await replicated(await database(), ['n3'], 'during-partition', 60_000)
  })

  it('backs a node up into a host directory mounted through extra_volumes, makes a database from the backup, and restores in place to a point in time', { timeout: 600_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    const repository = `${cluster?.root ?? ''}/backups`
    const created = await h1.post('/v1/databases', {
      id: 'bk',
      spec: {
        database_name: 'bk',
        port: 6440,
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
        backup_config: { repositories: [{ type: 'posix', base_path: '/backups/pg' }] },
        orchestrator_opts: { swarm: { extra_volumes: [{ host_path: repository, destination_path: '/backups' }] } },
        nodes: [{ name: 'n1', host_ids: ['host-1'] }]
      }
    })
    expect(created.status, JSON.stringify(created.body)).toBe(200)
    await waitTask(h1, 'bk', created.body.task.task_id, 180_000)
    const db: Db = (await h1.get('/v1/databases/bk')).body
    const [instance] = db.instances as [Instance]
    const login = { user: 'admin', password: PASSWORD, database: 'bk' }
    await queryNode(db, 'n1', login, 'CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100)')
    // The config holds repository settings (keys, for cloud repositories): 0600 and the container's postgres user's.
    const config = await stat(`${h1.options.dataDir}/instances/${instance.id}/data/pgbackrest.conf`)
    expect(config.mode & 0o777).toBe(0o600)

    const backup = async (type: string): Promise<string[]> => {
      const res = await h1.post('/v1/databases/bk/nodes/n1/backups', { type })
      expect(res.status, JSON.stringify(res.body)).toBe(200)
      await waitTask(h1, 'bk', res.body.task.task_id, 180_000)
      const log = (await h1.get(`/v1/databases/bk/tasks/${res.body.task.task_id as string}/log`)).body
      return (log.entries as Array<{ message: string }>).map(e => e.message)
    }
    expect((await backup('full')).some(line => /backup command end: completed successfully/.test(line))).toBe(true)
    // A point in time after the full backup, before the second batch (the server's clock, a second apart each way).
    await new Promise(resolve => setTimeout(resolve, 1100))
    const [{ t: target }] = await queryNode(db, 'n1', login, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t")
    await new Promise(resolve => setTimeout(resolve, 1100))
    await queryNode(db, 'n1', login, 'INSERT INTO items SELECT generate_series(101, 200)')
    await backup('incr')

    // What is in the repository, as pgBackRest on the host reads it (the anchor's layout under the mounted path).
    const { stdout } = await execFileAsync('pgbackrest', [`--repo1-path=${repository}/pg/databases/bk/default/n1`, '--stanza=db', `--lock-path=${cluster?.root ?? ''}/lock`,
      '--log-level-file=off', '--log-level-console=error', 'info', '--output=json'])
    const [stanza] = JSON.parse(stdout) as Array<{ status: { message: string }, backup: Array<{ type: string }> }>
    console.log(`restore target ${target as string}; backups (label, start and stop epoch): ${JSON.stringify(stanza?.backup.map((b: any) => [b.label, b.timestamp]))}`)
    expect(stanza?.status.message).toBe('ok')
    expect(stanza?.backup.map(b => b.type)).toEqual(['full', 'incr'])
    // WAL reaches the repository through archive-push inside the container.
    const admin = await instanceAdmin(h1, instance, 'bk')
    try {
      await admin.query('SELECT pg_switch_wal()')
      await until('a WAL segment archived', async () => {
        const [row] = (await admin.query('SELECT archived_count, failed_count FROM pg_stat_archiver')).rows
        expect(Number(row.failed_count)).toBe(0)
        return Number(row.archived_count) > 0
      }, 30_000, 250)
    } finally {
      await admin.end()
    }

    // A database made from that backup on another host: the backup's rows, under its own database name.
    const repositoryOpts = { extra_volumes: [{ host_path: repository, destination_path: '/backups' }] }
    const source = { source_database_id: 'bk', source_node_name: 'n1', source_database_name: 'bk', repository: { type: 'posix', base_path: '/backups/pg' } }
    const copy = await h1.post('/v1/databases', {
      id: 'bk2',
      spec: {
        database_name: 'bk2',
        port: 6441,
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
        restore_config: source,
        orchestrator_opts: { swarm: repositoryOpts },
        nodes: [{ name: 'n1', host_ids: ['host-2'] }]
      }
    })
    expect(copy.status, JSON.stringify(copy.body)).toBe(200)
    await waitTask(h1, 'bk2', copy.body.task.task_id, 240_000)
    const copied: Db = (await h1.get('/v1/databases/bk2')).body
    expect(await queryNode(copied, 'n1', { ...login, database: 'bk2' }, 'SELECT count(*)::int AS n FROM items')).toEqual([{ n: 200 }])

    // In place, to the point in time: exactly the first batch; the restore drops the node's backup_config (as the
    // anchor), so the restored node archives nothing and takes no backups until one is configured again.
    const restored = await h1.post('/v1/databases/bk/restore', { restore_config: { ...source, restore_options: { type: 'time', target } } })
    expect(restored.status, JSON.stringify(restored.body)).toBe(200)
    await waitTask(h1, 'bk', restored.body.task.task_id, 240_000)
    const nodeLog = (await h1.get(`/v1/databases/bk/tasks/${restored.body.node_tasks[0].task_id as string}/log`)).body
    expect((nodeLog.entries as Array<{ message: string }>).some(e => /restore command end: completed successfully/.test(e.message))).toBe(true)
    const after: Db = (await h1.get('/v1/databases/bk')).body
    expect(after.state).toBe('available')
    expect(after.spec.backup_config).toBeUndefined()
    expect(await queryNode(after, 'n1', login, 'SELECT count(*)::int AS n, max(id) AS last FROM items')).toEqual([{ n: 100, last: 100 }])
    await queryNode(after, 'n1', login, 'INSERT INTO items VALUES (1000)')
    const restoredAdmin = await instanceAdmin(h1, instance, 'bk')
    try {
      expect((await restoredAdmin.query('SHOW archive_command')).rows[0].archive_command).toBe('/bin/true')
    } finally {
      await restoredAdmin.end()
    }
    const refused = await h1.post('/v1/databases/bk/nodes/n1/backups', { type: 'full' })
    expect(refused.status).toBe(400)
    for (const id of ['bk', 'bk2']) {
      const deleted = await h1.request('DELETE', `/v1/databases/${id}`)
      await waitTask(h1, id, deleted.body.task.task_id)
    }
  })

  it('deletes the database: services, network and data go on every host', { timeout: 180_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    const res = await h1.request('DELETE', '/v1/databases/app')
    expect(res.status).toBe(200)
    await waitTask(h1, 'app', res.body.task.task_id)
    for (const i of [1, 2, 3, 4]) {
      expect(await docker(i, 'ps', '-aq', '--filter', 'label=pgedge.database.id=app')).toBe('')
      expect(await readdir(`${hosts[i - 1]?.options.dataDir ?? ''}/instances`)).toEqual([])
    }
    expect(await docker(1, 'service', 'ls', '-q', '--filter', 'label=pgedge.database.id=app')).toBe('')
    await until('network removed', async () => (await docker(1, 'network', 'ls', '-q', '--filter', 'name=app-database')) === '', 30_000, 500)
    expect(existsSync(`${hosts[0]?.options.dataDir ?? ''}/instances`)).toBe(true)
  })
})
