// Read replicas, stop/start/restart, switchover and automatic failover, with daemons as processes and real Postgres
// (process orchestrator). n1 has a primary and a streaming replica; n2 is a single instance on a third host.
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'
import {
  connectTo, createHaDatabase, database, type Db, primaryOf, stopStartRestartReplica, switchOverThereAndBack, waitTask as waitHaTask, writeThroughHostDeath
} from './helpers/ha.js'

let cluster: TestCluster | undefined

async function waitTask (d: DaemonProcess, taskId: string, timeoutMs = 90_000): Promise<any> {
  return await waitHaTask(d, taskId, timeoutMs, () => cluster?.problems() ?? '')
}

describe('a node with a streaming replica', () => {
  let hosts: DaemonProcess[]
  let db: Db

  beforeAll(async () => {
    cluster = await TestCluster.create('ha')
    hosts = await cluster.initAndJoin(3)
    await until('every host to know every other', async () => {
      for (const d of hosts) if ((await d.get<{ hosts: unknown[] }>('/v1/hosts')).body.hosts.length !== 3) return false
      return true
    })
  })

  afterEach((context) => {
    if (context.task.result?.state !== 'fail') return
    console.log(cluster?.problems())
    if (process.env.HA_LOG_DIR !== undefined) for (const d of hosts) writeFileSync(`${process.env.HA_LOG_DIR}/${d.hostId}.log`, d.output)
  })

  afterAll(async () => {
    await cluster?.destroy()
  })

  /** The database, with a table every node has (made on n1's primary, replicated as DDL). */
  async function createWithTable (h1: DaemonProcess): Promise<Db> {
    const db = await createHaDatabase(h1, waitTask)
    const admin = await connectTo(primaryOf(db, 'n1'), 'pgmesh', await h1.superuserPassword())
    await admin.query("SELECT pglogical.replicate_ddl_command('CREATE TABLE public.events (id text PRIMARY KEY, src text); GRANT ALL ON public.events TO admin', '{ddl_sql}')")
    await admin.end()
    const replica = await connectTo(db.instances.find(i => i.host_id === 'host-2'))
    await until('the table on the replica', async () => (await replica.query("SELECT to_regclass('public.events') AS t")).rows[0].t !== null, 20_000)
    await expect(replica.query("INSERT INTO public.events VALUES ('x', 'x')")).rejects.toThrow(/read-only/)
    await replica.end()
    const n2 = await connectTo(primaryOf(db, 'n2'))
    await until('the table on n2', async () => (await n2.query("SELECT to_regclass('public.events') AS t")).rows[0].t !== null, 20_000)
    await n2.end()
    return db
  }

  it('places the primary on the first host and a read-only replica on the second; every instance reports role and connection info', async () => {
    db = await createWithTable(hosts[0] as DaemonProcess)
  })

  it('stops, starts and restarts an instance, and refuses each in the wrong state', async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    await stopStartRestartReplica(h1, h3, db.instances.find(i => i.host_id === 'host-2')!.id, waitTask)
  })

  it('refuses a failover of a healthy node without skip_validation, and bad candidates', async () => {
    const [h1] = hosts as [DaemonProcess]
    const res = await h1.post('/v1/databases/ha/nodes/n1/failover', {})
    expect(res.status).toBe(200)
    expect(res.body.task.type).toBe('failover')
    const task = await until('the failover task to fail', async () => {
      const t = (await h1.get(`/v1/databases/ha/tasks/${res.body.task.task_id as string}`)).body
      return t.status === 'failed' ? t : undefined
    })
    expect(task.error).toBe('cluster is healthy; refuse failover unless skip_validation is true')
    const wrong = await h1.post('/v1/databases/ha/nodes/n1/switchover', { candidate_instance_id: db.instances.find(i => i.node_name === 'n2')!.id })
    expect(wrong.status).toBe(400)
    expect(wrong.body.message).toMatch(/does not belong to node n1/)
    expect((await h1.post('/v1/databases/ha/nodes/n9/switchover', {})).status).toBe(404)
  })

  it('switches over there and back while a writer inserts: no acknowledged row lost, replication to n2 intact', async () => {
    const [h1, h2, h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    await switchOverThereAndBack(h1, h2, h3, waitTask, 90_000)
  }, 300_000)

  it('deleted and created again under its id, switches over there and back: its terms go on above the deleted one\'s', async () => {
    const [h1, h2, h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const deleted = await h1.request('DELETE', '/v1/databases/ha')
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200)
    await waitTask(h1, deleted.body.task.task_id as string)
    db = await createWithTable(h1)
    // Before, its primary never held the node's lease: the switchover stayed pending.
    await switchOverThereAndBack(h1, h2, h3, waitTask, 90_000)
  }, 300_000)

  it('fails over a healthy node with skip_validation to an automatically picked replica', async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    expect(primaryOf(await database(h3), 'n1')?.host_id).toBe('host-1')
    const res = await h1.post('/v1/databases/ha/nodes/n1/failover', { skip_validation: true })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h1, res.body.task.task_id as string)
    expect(primaryOf(await database(h3), 'n1')?.host_id).toBe('host-2')
    await until('host-1 to follow host-2 as a replica', async () => {
      const i = (await database(h3)).instances.find(x => x.node_name === 'n1' && x.host_id === 'host-1')
      return i?.postgres?.role === 'replica' && i.state === 'available'
    }, 90_000, 250)
  }, 180_000)

  it('switches over at a scheduled time, and refuses a second switchover of the node meanwhile', async () => {
    const [h1, h2, h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    expect(primaryOf(await database(h3), 'n1')?.host_id).toBe('host-2')
    const at = new Date(Date.now() + 4000).toISOString()
    const res = await h1.post('/v1/databases/ha/nodes/n1/switchover', { scheduled_at: at })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    const again = await h2.post('/v1/databases/ha/nodes/n1/switchover', {})
    expect(again.status).toBe(409)
    expect(again.body.name).toBe('operation_already_in_progress')
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect((await h1.get(`/v1/databases/ha/tasks/${res.body.task.task_id as string}`)).body.status).toBe('pending')
    expect(primaryOf(await database(h3), 'n1')?.host_id).toBe('host-2')
    await waitTask(h1, res.body.task.task_id as string)
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(at))
    expect(primaryOf(await database(h3), 'n1')?.host_id).toBe('host-1')
    await until('host-2 to follow host-1 as a replica', async () => {
      const i = (await database(h3)).instances.find(x => x.node_name === 'n1' && x.host_id === 'host-2')
      return i?.postgres?.role === 'replica' && i.state === 'available'
    }, 90_000, 250)
  }, 180_000)

  it('stopping the primary hands the node over to its replica; started again, it comes back as a replica', async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const primary = primaryOf(await database(h3), 'n1')
    expect(primary?.host_id).toBe('host-1')
    const stop = await h3.post(`/v1/databases/ha/instances/${primary!.id}/stop-instance`)
    expect(stop.status, JSON.stringify(stop.body)).toBe(200)
    await waitTask(h3, stop.body.task.task_id as string)
    await until('host-2 to take over', async () => primaryOf(await database(h3), 'n1')?.host_id === 'host-2', 30_000, 100)
    const c = await connectTo(primaryOf(await database(h3), 'n1'))
    await c.query("INSERT INTO public.events VALUES ('while-primary-stopped', 'stop')")
    await c.end()
    expect((await database(h1)).instances.find(i => i.id === primary!.id)?.state).toBe('stopped')
    const start = await h1.post(`/v1/databases/ha/instances/${primary!.id}/start-instance`)
    expect(start.status, JSON.stringify(start.body)).toBe(200)
    await waitTask(h1, start.body.task.task_id as string, 120_000)
    const back = (await database(h3)).instances.find(i => i.id === primary!.id)
    expect(back?.postgres?.role).toBe('replica')
    const reader = await connectTo(back)
    await until('the row written meanwhile on the restarted instance', async () => (await reader.query("SELECT 1 FROM public.events WHERE id = 'while-primary-stopped'")).rowCount === 1, 20_000)
    await reader.end()
  }, 180_000)

  it('stopping the primary while its replica is stopped too: started again, the primary takes writes', async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const db = await database(h3)
    const primary = primaryOf(db, 'n1')
    const replica = db.instances.find(i => i.node_name === 'n1' && i.id !== primary?.id)
    const call = async (id: string, op: string): Promise<void> => {
      const res = await h1.post(`/v1/databases/ha/instances/${id}/${op}`)
      expect(res.status, JSON.stringify(res.body)).toBe(200)
      await waitTask(h1, res.body.task.task_id as string, 120_000)
    }
    await call(replica!.id, 'stop-instance')
    // No replica to hand over to: the primary itself stops (fenced: read-only, then down).
    await call(primary!.id, 'stop-instance')
    await until('primary stopped', async () => (await database(h3)).instances.find(i => i.id === primary!.id)?.state === 'stopped', 30_000, 100)
    await call(primary!.id, 'start-instance')
    await until('the started primary takes writes', async () => {
      const c = await connectTo(primaryOf(await database(h3), 'n1')).catch(() => undefined)
      if (c === undefined) return false
      try {
        await c.query("INSERT INTO public.events VALUES ('after-restart-alone', 'stop')")
        return true
      } catch {
        return false
      } finally {
        await c.end().catch(() => {})
      }
    }, 30_000, 250)
    await call(replica!.id, 'start-instance')
    const reader = await connectTo((await database(h3)).instances.find(i => i.id === replica!.id))
    await until('the replica follows again', async () => (await reader.query("SELECT 1 FROM public.events WHERE id = 'after-restart-alone'")).rowCount === 1, 30_000)
    await reader.end()
  }, 240_000)

  it('adds a replica when a host joins a node\'s host_ids and removes it when the host leaves', async () => {
    const [h1, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const spec = (await h1.get('/v1/databases/ha')).body.spec
    spec.nodes[1].host_ids = ['host-3', 'host-1']
    const grow = await h1.post('/v1/databases/ha', { spec })
    expect(grow.status, JSON.stringify(grow.body)).toBe(200)
    await waitTask(h1, grow.body.task.task_id as string, 120_000)
    const grown = await database(h3)
    const replica = grown.instances.find(i => i.node_name === 'n2' && i.host_id === 'host-1')
    expect(replica?.postgres?.role).toBe('replica')
    expect(replica?.state).toBe('available')
    const n2 = await connectTo(primaryOf(grown, 'n2'))
    await n2.query("INSERT INTO public.events VALUES ('n2-with-replica', 'n2')")
    await n2.end()
    const reader = await connectTo(replica)
    await until('the row on n2\'s replica', async () => (await reader.query("SELECT 1 FROM public.events WHERE id = 'n2-with-replica'")).rowCount === 1, 20_000)
    await expect(reader.query("INSERT INTO public.events VALUES ('y', 'y')")).rejects.toThrow(/read-only/)
    await reader.end()

    spec.nodes[1].host_ids = ['host-3']
    const shrink = await h1.post('/v1/databases/ha', { spec })
    expect(shrink.status, JSON.stringify(shrink.body)).toBe(200)
    await waitTask(h1, shrink.body.task.task_id as string, 120_000)
    const shrunk = await database(h3)
    expect(shrunk.instances.filter(i => i.node_name === 'n2').map(i => i.host_id)).toEqual(['host-3'])
    // n2 takes writes again without waiting for the replica that is gone.
    const after = await connectTo(primaryOf(shrunk, 'n2'))
    await after.query("INSERT INTO public.events VALUES ('n2-alone-again', 'n2')")
    await after.end()
  }, 240_000)

  it('kills the primary\'s host (daemon and Postgres): the replica becomes primary and writes through it reach n2', async () => {
    const [, , h3] = hosts as [DaemonProcess, DaemonProcess, DaemonProcess]
    const victimId = primaryOf(await database(h3), 'n1')?.host_id
    const victim = hosts.find(h => h.hostId === victimId)!
    await writeThroughHostDeath(h3, victimId === 'host-1' ? 'host-2' : 'host-1', async () => {
      await victim.stop('SIGKILL')
      await new Promise<void>(resolve => { spawn('pkill', ['-KILL', '-f', `${victim.options.dataDir}/`]).once('exit', () => { resolve() }) })
    })
  }, 180_000)
})
