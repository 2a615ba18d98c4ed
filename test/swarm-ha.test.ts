// Streaming replicas, stop/start/restart, switchover and failover on Swarm hosts: 3 hosts on this machine, each a
// network namespace with its own dockerd (all swarm managers) and its own pgmesh daemon (scripts/testbed/tb.sh).
// Node n1 has its primary on host-1 and a streaming replica on host-2; n2 is a single instance on host-3.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SwarmOrchestrator } from '@pgmesh/orchestrator-swarm'
import pg from 'pg'
import pino from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, type TestCluster, until } from './helpers/cluster.js'
import {
  connectTo, database, type Db, expectAllArrived, expectN2RowOnN1, ids, type Instance, PASSWORD, primaryOf, waitTask as waitHaTask, Writer
} from './helpers/ha.js'
import { dockerSocket, hostAddress, IMAGE, startSwarmTestbed, tb, testbedLeftovers } from './helpers/swarm-testbed.js'

let cluster: TestCluster | undefined
let hosts: DaemonProcess[] = []

async function waitTask (d: DaemonProcess, taskId: string, timeoutMs = 120_000): Promise<any> {
  return await waitHaTask(d, taskId, timeoutMs, () => cluster?.problems() ?? '')
}

async function docker (host: number, ...args: string[]): Promise<string> {
  return (await tb('docker', String(host), ...args)).trim()
}

function hostIndex (hostId: string): number {
  return Number(hostId.replace('host-', ''))
}

function daemonOf (hostId: string): DaemonProcess {
  return hosts[hostIndex(hostId) - 1] as DaemonProcess
}

/** The control plane's superuser over the instance's unix socket in its bind mount (peers only over TCP). */
async function admin (instance: Instance, databaseName = 'ha'): Promise<pg.Client> {
  const client = new pg.Client({
    host: `${daemonOf(instance.host_id).options.dataDir}/instances/${instance.id}/run`, port: instance.connection_info?.port, user: 'pgmesh', database: databaseName
  })
  client.on('error', () => {})
  await client.connect()
  return client
}

function slotName (instanceId: string): string {
  return `pgmesh_${instanceId.replaceAll('-', '_')}`
}

async function replicaOf (d: DaemonProcess, node: string): Promise<Instance> {
  const found = (await database(d)).instances.find(i => i.node_name === node && i.postgres?.role === 'replica' && i.state === 'available')
  if (found === undefined) throw new Error(`no available replica of ${node}`)
  return found
}

describe('a node with a streaming replica on swarm hosts', () => {
  let db: Db

  beforeAll(async () => {
    ;({ cluster, hosts } = await startSwarmTestbed('swarm-ha', 3, 3))
    await until('every host to know every other', async () => {
      for (const d of hosts) if ((await d.get<{ hosts: unknown[] }>('/v1/hosts')).body.hosts.length !== 3) return false
      return true
    })
  }, 300_000)

  afterEach((context) => {
    if (context.task.result?.state === 'fail') console.log(cluster?.problems())
  })

  afterAll(async () => {
    await cluster?.destroy()
    await tb('down')
    expect(await testbedLeftovers()).toEqual({ netns: [], dockerds: [], cgroups: [], paths: [] })
  }, 120_000)

  it('clones the replica from the primary over its slot; roles in the API, replica read-only, rows flow to it and between the nodes', { timeout: 240_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    const res = await h1.post('/v1/databases', {
      id: 'ha',
      spec: {
        database_name: 'ha',
        port: 6432,
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-3'] }]
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h1, res.body.task.task_id as string)
    db = await database(h1)
    const roles = db.instances.map(i => `${i.node_name} ${i.host_id} ${i.postgres?.role ?? '-'} ${i.state}`)
    expect(roles).toEqual(expect.arrayContaining(['n1 host-1 primary available', 'n1 host-2 replica available', 'n2 host-3 primary available']))
    expect(db.instances).toHaveLength(3)

    // The replica is a service of its own on host-2; its one-shot clone container is gone.
    const replica = db.instances.find(i => i.host_id === 'host-2') as Instance
    const primary = primaryOf(db, 'n1') as Instance
    const service = JSON.parse(await docker(1, 'service', 'inspect', `postgres-${replica.id}`))[0]
    expect(service.Spec.Labels['pgedge.host.id']).toBe('host-2')
    expect(await docker(2, 'ps', '-q', '--filter', `label=com.docker.swarm.service.name=postgres-${replica.id}`)).not.toBe('')
    expect(await docker(2, 'ps', '-aq', '--filter', 'label=pgmesh.clone-of')).toBe('')
    // It streams over its own physical slot on the primary.
    const primaryAdmin = await admin(primary, 'postgres')
    await until('the replica streaming over its slot', async () => {
      const { rows } = await primaryAdmin.query("SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'")
      return JSON.stringify(rows) === JSON.stringify([{ slot_name: slotName(replica.id), active: true }])
    }, 20_000, 250)
    const { rows: senders } = await primaryAdmin.query('SELECT host(client_addr) AS addr FROM pg_stat_replication WHERE application_name = $1', [slotName(replica.id)])
    // From host-2's own address: the primary trusts it as a peer.
    expect(senders).toEqual([{ addr: hostAddress(2) }])
    await primaryAdmin.end()

    const ddl = await admin(primary)
    await ddl.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.events (id text PRIMARY KEY, src text); GRANT ALL ON public.events TO admin', '{ddl_sql}')")
    await ddl.end()
    const reader = await connectTo(replica)
    await until('the table on the replica', async () => (await reader.query("SELECT to_regclass('public.events') AS t")).rows[0].t !== null, 20_000)
    await expect(reader.query("INSERT INTO public.events VALUES ('x', 'x')")).rejects.toThrow(/read-only/)
    const writer = await connectTo(primary)
    await writer.query("INSERT INTO public.events VALUES ('on-primary', 'n1')")
    await writer.end()
    await until('the primary\'s row on the replica', async () => (await reader.query("SELECT 1 FROM public.events WHERE id = 'on-primary'")).rowCount === 1, 20_000)
    await reader.end()
    await until('the row on n2', async () => {
      const n2 = await connectTo(primaryOf(db, 'n2'))
      try { return (await n2.query("SELECT 1 FROM public.events WHERE id = 'on-primary'")).rowCount === 1 } finally { await n2.end() }
    }, 30_000, 250)
    await expectN2RowOnN1(h1, 'from-n2')
  })

  it('stops, starts and restarts the replica, and refuses each in the wrong state', { timeout: 240_000 }, async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const replica = db.instances.find(i => i.host_id === 'host-2')!.id
    const path = (op: string, id = replica): string => `/v1/databases/ha/instances/${id}/${op}`

    expect((await h3.post(path('restart', 'ha-n1-nosuch'), {})).status).toBe(404)
    const startAvailable = await h3.post(path('start-instance'))
    expect(startAvailable.status).toBe(400)
    expect(startAvailable.body.message).toMatch(/cannot be started, it is in available state/)

    const before = await connectTo(db.instances.find(i => i.id === replica))
    const startedAt = (await before.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t as string
    await before.end()
    const restart = await h3.post(path('restart'), {})
    expect(restart.status, JSON.stringify(restart.body)).toBe(200)
    expect(restart.body.task.type).toBe('restart_instance')
    await waitTask(h3, restart.body.task.task_id as string)
    const after = await connectTo((await database(h1)).instances.find(i => i.id === replica))
    expect((await after.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t).not.toBe(startedAt)
    expect((await after.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(true)
    await after.end()

    const stop = await h1.post(path('stop-instance'))
    expect(stop.status, JSON.stringify(stop.body)).toBe(200)
    await waitTask(h1, stop.body.task.task_id as string)
    expect((await database(h1)).instances.find(i => i.id === replica)?.state).toBe('stopped')
    // Stopped = the service scaled to 0, nothing running on host-2.
    expect(JSON.parse(await docker(1, 'service', 'inspect', `postgres-${replica}`))[0].Spec.Mode.Replicated.Replicas).toBe(0)
    expect(await docker(2, 'ps', '-q', '--filter', `label=pgedge.instance.id=${replica}`)).toBe('')
    const restartStopped = await h1.post(path('restart'), {})
    expect(restartStopped.status).toBe(400)
    expect(restartStopped.body.message).toBe(`instance ${replica} is not restartable, it is in stopped state`)
    expect((await h1.post(path('stop-instance'))).body.message).toMatch(/cannot be stopped, it is in stopped state/)
    // The primary keeps taking writes while its only replica is stopped.
    const primary = await connectTo(primaryOf(await database(h1), 'n1'))
    await primary.query("INSERT INTO public.events VALUES ('while-stopped', 'stop')")
    await primary.end()

    const start = await h1.post(path('start-instance'))
    expect(start.status, JSON.stringify(start.body)).toBe(200)
    await waitTask(h1, start.body.task.task_id as string)
    const back = (await database(h1)).instances.find(i => i.id === replica)
    expect(back?.postgres?.role).toBe('replica')
    const replicaClient = await connectTo(back)
    await until('the replica to catch up', async () => (await replicaClient.query("SELECT 1 FROM public.events WHERE id = 'while-stopped'")).rowCount === 1, 30_000)
    await replicaClient.end()
  })

  it('restarts a stopped swarm instance through the orchestrator: it starts again instead of waiting for a task that never comes', { timeout: 180_000 }, async () => {
    // The API refuses restarting a stopped instance, but the orchestrator can be asked to (a restart planned just
    // before a fence stopped it); it starts the instance, as the process orchestrator does.
    const dataDir = await mkdtemp(join(tmpdir(), 'pgmesh-swarm-direct-'))
    const orchestrator = await SwarmOrchestrator.open({
      hostId: 'host-3', dataDir, logger: pino({ level: 'silent' }), dockerHost: dockerSocket(3), defaultImage: IMAGE, readyTimeoutMs: 90_000
    })
    const id = 'direct-n1-x3'
    try {
      const created = await orchestrator.ensureInstance({ instanceId: id, port: 6499, listenAddresses: [hostAddress(3)] })
      expect(created).toMatchObject({ state: 'running', role: 'primary' })
      expect((await orchestrator.stopInstance(id)).state).toBe('stopped')
      const started = Date.now()
      const restarted = await orchestrator.restartInstance(id)
      expect(restarted).toMatchObject({ state: 'running', role: 'primary' })
      expect(Date.now() - started).toBeLessThan(60_000)
      expect(JSON.parse(await docker(3, 'service', 'inspect', `postgres-${id}`))[0].Spec.Mode.Replicated.Replicas).toBe(1)
    } finally {
      await orchestrator.removeInstance(id)
      await orchestrator.close()
      await rm(dataDir, { recursive: true, force: true })
    }
    expect(await docker(3, 'service', 'ls', '-q', '--filter', `name=postgres-${id}`)).toBe('')
  })

  it('switches over there and back while a writer inserts: no acknowledged row lost, replication to n2 intact', { timeout: 300_000 }, async () => {
    const [h1, h2, h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const writer = new Writer(() => h3, 'sw')
    writer.start()
    await until('some writes', () => writer.acknowledged.length > 20, 20_000)
    for (const [from, to] of [['host-1', 'host-2'], ['host-2', 'host-1']] as const) {
      const current = await database(h3)
      const candidate = current.instances.find(i => i.node_name === 'n1' && i.host_id === to)!
      expect(primaryOf(current, 'n1')?.host_id).toBe(from)
      const started = Date.now()
      const res = await h2.post('/v1/databases/ha/nodes/n1/switchover', { candidate_instance_id: candidate.id })
      expect(res.status, JSON.stringify(res.body)).toBe(200)
      expect(res.body.task.type).toBe('switchover')
      await waitTask(h2, res.body.task.task_id as string)
      console.log(`swarm switchover ${from} -> ${to} took ${Date.now() - started} ms`)
      // The former primary is rebuilt as a replica of the new one (cloned again on its host).
      await until(`${from} to follow ${to} as a replica`, async () => {
        const now = (await database(h1)).instances.find(i => i.node_name === 'n1' && i.host_id === from)
        return now?.postgres?.role === 'replica' && now.state === 'available'
      }, 120_000, 250)
      const mark = writer.acknowledged.length
      await until('writes through the new primary', () => writer.acknowledged.length > mark + 20, 30_000)
    }
    await writer.stop()
    console.log(`writer: ${writer.acknowledged.length} acknowledged, ${writer.failures} failed attempts`)
    await expectAllArrived(h3, writer, 'sw')
    await expectN2RowOnN1(h1, 'after-switchovers-from-n2')
    // The replica streams from the primary again, from its host's address.
    const primary = primaryOf(await database(h1), 'n1') as Instance
    const replica = await replicaOf(h1, 'n1')
    const c = await admin(primary, 'postgres')
    await until('the rebuilt replica streaming', async () =>
      (await c.query('SELECT 1 FROM pg_stat_replication WHERE application_name = $1', [slotName(replica.id)])).rowCount === 1, 30_000, 250)
    await c.end()
  })

  it('kills the primary\'s host (daemon, dockerd, Postgres): the replica becomes primary, writes through it reach n2; the host comes back as a replica', { timeout: 300_000 }, async () => {
    const [, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const victimId = primaryOf(await database(h3), 'n1')?.host_id as string
    const victim = daemonOf(victimId)
    const survivor = victimId === 'host-1' ? 'host-2' : 'host-1'
    const victimInstance = (await database(h3)).instances.find(i => i.node_name === 'n1' && i.host_id === victimId) as Instance
    // The replica may take over only once the primary counts it as synchronous and the voters know that.
    await until('both n1 instances available', async () => (await database(h3)).instances.filter(i => i.node_name === 'n1' && i.state === 'available').length === 2, 60_000, 250)
    await new Promise(resolve => setTimeout(resolve, 3000))
    const writer = new Writer(() => h3, 'kill')
    writer.start()
    await until('some writes', () => writer.acknowledged.length > 20, 20_000)
    const killedAt = Date.now()
    await victim.stop('SIGKILL')
    await tb('kill-host', String(hostIndex(victimId)))
    const mark = writer.acknowledged.length
    await until('a write through the new primary', async () => writer.acknowledged.length > mark + 1 && primaryOf(await database(h3), 'n1')?.host_id === survivor, 60_000, 20)
    console.log(`swarm failover: the new primary took a write ${Date.now() - killedAt} ms after the primary's host died`)
    await until('more writes', () => writer.acknowledged.length > mark + 20, 30_000)
    await writer.stop()
    // Rows the dead primary acknowledged are on the new primary (synchronous replication); the later ones on n2.
    const c = await connectTo(primaryOf(await database(h3), 'n1'))
    const have = await ids(c, 'kill')
    await c.end()
    expect(writer.acknowledged.map(i => `kill-${i}`).filter(id => !have.has(id))).toEqual([])
    const afterFailover = writer.acknowledged.slice(mark).map(i => `kill-${i}`)
    const n2 = await connectTo(primaryOf(await database(h3), 'n2'))
    await until('writes after the failover on n2', async () => { const got = await ids(n2, 'kill'); return afterFailover.every(id => got.has(id)) }, 30_000, 500)
    const n2has = await ids(n2, 'kill')
    await n2.end()
    console.log(`rows acknowledged by the dead primary that never reached n2: ${writer.acknowledged.map(i => `kill-${i}`).filter(id => !n2has.has(id)).length}`)
    await expectN2RowOnN1(h3, 'after-failover-from-n2')

    // The host comes back (dockerd, then its daemon): its former primary is discarded and cloned from the new one.
    await tb('start-host', String(hostIndex(victimId)))
    await victim.start()
    await until(`${victimId} to follow ${survivor} as a replica`, async () => {
      const i = (await database(h3)).instances.find(x => x.id === victimInstance.id)
      return i?.postgres?.role === 'replica' && i.state === 'available'
    }, 180_000, 500)
    const reader = await connectTo((await database(h3)).instances.find(i => i.id === victimInstance.id))
    await until('the rows written meanwhile on the returned host', async () => (await reader.query("SELECT 1 FROM public.events WHERE id = 'after-failover-from-n2'")).rowCount === 1, 30_000, 250)
    await reader.end()
  })
})
