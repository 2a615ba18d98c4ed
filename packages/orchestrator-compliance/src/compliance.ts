import { type DatabaseSetup, type InstanceSpec, InvalidInputError, NotFoundError, replicaSlotName } from '@pgmesh/model'
import type { InstanceEvent, InstanceStatus, Orchestrator } from '@pgmesh/orchestrator'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { admin, eventually, freePort, query } from './sql.js'

/** What an implementation hands the suite: its orchestrators and where their instances can be reached. */
export interface ComplianceTarget {
  /** The orchestrator under test: the suite creates, changes and removes its instances through it. */
  orchestrator: Orchestrator
  /** Runs the streaming replica of `orchestrator`'s primary: the same orchestrator, or one on another host. */
  replicaOrchestrator: Orchestrator
  /** The spec fields that depend on where the instances run (listen and peer addresses, image); the suite adds the rest. */
  baseSpec: Pick<InstanceSpec, 'listenAddresses'> & Partial<InstanceSpec>
  /** Where the test and the replica reach the primary's host over TCP. */
  primaryHost: string
  /** Where the test reaches the replica's host over TCP. */
  replicaHost: string
  /** How long the orchestrator may take to notice by itself that a server changed (its monitoring interval). */
  monitorIntervalMs: number
  /** Undoes the setup; the suite has removed its instances (best effort) before. */
  teardown: () => Promise<void>
}

export interface ComplianceOptions {
  /** How long one case may take; default 180 s. */
  timeoutMs?: number
}

/** Ids of the shape the model makes (`<database>-<node>-<host hash>`), which every orchestrator accepts. */
const PRIMARY = 'compliance-n1-aaaa1111'
const REPLICA = 'compliance-n1-bbbb2222'
const MISSING = 'compliance-n9-cccc3333'
const PASSWORD = 'owner secret'
const SETUP: DatabaseSetup = {
  name: 'app',
  users: [
    { username: 'app_owner', password: PASSWORD, dbOwner: true, attributes: ['LOGIN'] },
    { username: 'reporter', password: 'r3port', attributes: ['LOGIN'] }
  ],
  scripts: { postDatabaseCreate: ['CREATE TABLE script_runs (id serial PRIMARY KEY)', 'INSERT INTO script_runs DEFAULT VALUES'] }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * Registers the cases every `Orchestrator` must pass (as js-libp2p's interface-compliance-tests do for its
 * transports): `setup` brings up the implementation against real PostgreSQL. The cases run in order on shared
 * instances, one primary and one streaming replica, and remove them at the end.
 */
export function orchestratorCompliance (name: string, setup: () => Promise<ComplianceTarget>, options: ComplianceOptions = {}): void {
  const timeout = options.timeoutMs ?? 180_000

  describe(`${name}: Orchestrator compliance`, () => {
    let target: ComplianceTarget | undefined
    let o: Orchestrator
    let primary: InstanceStatus
    let replica: InstanceStatus
    /** The spec the primary last got (re-applied as is to check idempotence). */
    let applied: InstanceSpec
    const events: InstanceEvent[] = []
    let unsubscribe = (): void => {}

    const spec = (instanceId: string, extra: Partial<InstanceSpec> = {}): InstanceSpec =>
      ({ ...target?.baseSpec, listenAddresses: target?.baseSpec.listenAddresses ?? [], instanceId, port: 0, database: SETUP, ...extra })
    const asOwner = (host: string, status: InstanceStatus, password = PASSWORD): Parameters<typeof query>[0] =>
      ({ host, port: status.port, user: 'app_owner', password, database: 'app' })
    const scriptRuns = async (status: InstanceStatus): Promise<number> =>
      (await admin<{ runs: number }>(status, 'SELECT count(*)::int AS runs FROM script_runs', 'app'))[0]?.runs ?? -1
    const physicalSlots = async (): Promise<Array<Record<string, unknown>>> =>
      await admin(primary, "SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'")

    beforeAll(async () => {
      target = await setup()
      o = target.orchestrator
      unsubscribe = o.onEvent(event => { events.push(event) })
    }, 900_000)

    afterAll(async () => {
      unsubscribe()
      if (target === undefined) return
      await target.replicaOrchestrator.removeInstance(REPLICA).catch(() => undefined)
      await o.removeInstance(PRIMARY).catch(() => undefined)
      await target.teardown()
    }, 300_000)

    it('refuses invalid ids and ports before doing anything', { timeout }, async () => {
      await expect(o.ensureInstance(spec('Not/An/Id'))).rejects.toBeInstanceOf(InvalidInputError)
      await expect(o.ensureInstance(spec(PRIMARY, { port: 70_000 }))).rejects.toBeInstanceOf(InvalidInputError)
      await expect(o.ensureInstance(spec(PRIMARY, { port: 1.5 }))).rejects.toBeInstanceOf(InvalidInputError)
      await expect(o.status('../etc')).rejects.toBeInstanceOf(InvalidInputError)
      expect(await o.status(PRIMARY)).toBeUndefined()
      expect((await o.list()).map(s => s.instanceId)).not.toContain(PRIMARY)
    })

    it('answers NotFoundError for an instance it does not have; removing one is a no-op', { timeout }, async () => {
      for (const operation of [o.startInstance, o.stopInstance, o.restartInstance, o.promote]) {
        await expect(operation.call(o, MISSING)).rejects.toBeInstanceOf(NotFoundError)
      }
      await expect(o.removeInstance(MISSING)).resolves.toBeUndefined()
      expect(await o.status(MISSING)).toBeUndefined()
    })

    it('creates a running primary that accepts connections, with its users, database and scripts', { timeout }, async () => {
      applied = spec(PRIMARY)
      primary = await o.ensureInstance(applied)
      expect(primary).toMatchObject({ instanceId: PRIMARY, state: 'running', role: 'primary' })
      expect(primary.port).toBeGreaterThan(0)
      expect(primary.pid).toBeGreaterThan(0)
      expect(primary.postgresVersion).toMatch(/^\d+\.\d+$/)
      expect(await query(asOwner(target?.primaryHost ?? '', primary), 'SELECT current_user AS me, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()'))
        .toEqual([{ me: 'app_owner', owner: 'app_owner' }])
      await expect(query(asOwner(target?.primaryHost ?? '', primary, 'wrong'), 'SELECT 1')).rejects.toThrow(/password authentication failed/)
      expect(await scriptRuns(primary)).toBe(1)
      expect(await admin(primary, "SELECT current_setting('wal_level') AS wal_level")).toEqual([{ wal_level: 'logical' }])
    })

    it('reports the instance in status and list', { timeout }, async () => {
      const { instanceId, port, pid, postgresVersion } = primary
      expect(await o.status(PRIMARY)).toMatchObject({ instanceId, state: 'running', role: 'primary', port, pid, postgresVersion })
      expect((await o.list()).filter(s => s.instanceId === PRIMARY)).toMatchObject([{ instanceId, state: 'running', port }])
    })

    it('re-applying the same spec changes nothing: same server, same port, scripts not run again', { timeout }, async () => {
      const again = await o.ensureInstance(applied)
      expect(again).toMatchObject({ state: 'running', port: primary.port, pid: primary.pid })
      expect(await scriptRuns(again)).toBe(1)
    })

    it('applies reloadable settings and auth rules without a restart, and restarts for a postmaster setting', { timeout }, async () => {
      applied = spec(PRIMARY, { postgresqlConf: { work_mem: '8MB' }, pgHbaConf: ['host app reporter 0.0.0.0/0 reject'] })
      const reloaded = await o.ensureInstance(applied)
      expect(reloaded.pid).toBe(primary.pid)
      expect(await admin(reloaded, "SELECT current_setting('work_mem') AS v")).toEqual([{ v: '8MB' }])
      await expect(query({ host: target?.primaryHost ?? '', port: primary.port, user: 'reporter', password: 'r3port', database: 'app' }, 'SELECT 1'))
        .rejects.toThrow(/rejects connection/)

      applied = spec(PRIMARY, { ...applied, postgresqlConf: { work_mem: '8MB', max_connections: 50 } })
      const restarted = await o.ensureInstance(applied)
      expect(restarted).toMatchObject({ state: 'running', port: primary.port })
      expect(restarted.pid).not.toBe(primary.pid)
      expect(await admin(restarted, "SELECT current_setting('max_connections') AS m, current_setting('work_mem') AS w")).toEqual([{ m: '50', w: '8MB' }])
      primary = restarted
    })

    it('with deferRestart, reloads what it can and reports a pending restart; the next ensure without it restarts', { timeout }, async () => {
      applied = spec(PRIMARY, { ...applied, postgresqlConf: { work_mem: '12MB', max_connections: 60 } })
      const deferred = await o.ensureInstance({ ...applied, deferRestart: true })
      expect(deferred).toMatchObject({ state: 'running', pid: primary.pid, pendingRestart: true })
      expect(await admin(deferred, "SELECT current_setting('max_connections') AS m, current_setting('work_mem') AS w")).toEqual([{ m: '50', w: '12MB' }])
      // Still pending when asked again with the flag, and in status.
      expect(await o.ensureInstance({ ...applied, deferRestart: true })).toMatchObject({ pid: primary.pid, pendingRestart: true })
      expect(await o.status(PRIMARY)).toMatchObject({ pendingRestart: true })
      const restarted = await o.ensureInstance(applied)
      expect(restarted.pid).not.toBe(primary.pid)
      expect(restarted.pendingRestart).toBeUndefined()
      expect(await admin(restarted, "SELECT current_setting('max_connections') AS m")).toEqual([{ m: '60' }])
      primary = restarted

      // A new port too: the server keeps the old one (and says so) until its restart.
      const port = await freePort()
      applied = spec(PRIMARY, { ...applied, port })
      const moving = await o.ensureInstance({ ...applied, deferRestart: true })
      expect(moving).toMatchObject({ state: 'running', port: primary.port, pid: primary.pid, pendingRestart: true })
      expect(await admin(moving, "SELECT current_setting('port') AS p")).toEqual([{ p: String(primary.port) }])
      const moved = await o.ensureInstance(applied)
      expect(moved).toMatchObject({ state: 'running', port })
      expect(moved.pendingRestart).toBeUndefined()
      expect(await admin(moved, "SELECT current_setting('port') AS p")).toEqual([{ p: String(port) }])
      primary = moved
    })

    it('refuses a setting the orchestrator owns and leaves the instance as it was', { timeout }, async () => {
      await expect(o.ensureInstance({ ...applied, postgresqlConf: { port: 5999 } })).rejects.toBeInstanceOf(InvalidInputError)
      expect(await o.status(PRIMARY)).toMatchObject({ state: 'running', port: primary.port, pid: primary.pid })
    })

    it('stops, starts and restarts, keeping its port and data', { timeout }, async () => {
      const stopped = await o.stopInstance(PRIMARY)
      expect(stopped).toMatchObject({ state: 'stopped', port: primary.port })
      expect(await o.status(PRIMARY)).toMatchObject({ state: 'stopped' })
      await expect(query(asOwner(target?.primaryHost ?? '', primary), 'SELECT 1')).rejects.toThrow()
      const started = await o.startInstance(PRIMARY)
      expect(started).toMatchObject({ state: 'running', role: 'primary', port: primary.port })
      const restarted = await o.restartInstance(PRIMARY)
      expect(restarted).toMatchObject({ state: 'running', port: primary.port })
      expect(restarted.pid).not.toBe(started.pid)
      expect(await scriptRuns(restarted)).toBe(1)
      primary = await o.ensureInstance(applied)
      expect(primary).toMatchObject({ state: 'running', port: restarted.port, pid: restarted.pid })
    })

    it('brings back a postmaster that died and reports exited, then restarted', { timeout }, async () => {
      await sleep(2 * (target?.monitorIntervalMs ?? 0)) // the orchestrator has seen the current server
      events.length = 0
      const killed = primary.pid ?? 0
      process.kill(killed, 'SIGKILL')
      await eventually(async () => { expect(events.map(e => e.type)).toContain('restarted') }, 120_000)
      expect(events[0]).toEqual({ type: 'exited', instanceId: PRIMARY, pid: killed })
      expect(events.find(e => e.type === 'restarted')).toMatchObject({ instanceId: PRIMARY })
      primary = await eventually(async () => {
        const status = await o.status(PRIMARY)
        if (status?.state !== 'running') throw new Error(`state ${status?.state}`)
        return status
      }, 120_000)
      expect(primary.pid).not.toBe(killed)
      expect(await scriptRuns(primary)).toBe(1)
    })

    it('clones a streaming replica over a slot; it refuses writes and receives the primary\'s', { timeout }, async () => {
      const replicas = target?.replicaOrchestrator ?? o
      replica = await replicas.ensureInstance(spec(REPLICA, { primary: { host: target?.primaryHost ?? '', port: primary.port } }))
      expect(replica).toMatchObject({ instanceId: REPLICA, state: 'running', role: 'replica' })
      expect(await replicas.status(REPLICA)).toMatchObject({ role: 'replica' })
      await eventually(async () => { expect(await physicalSlots()).toEqual([{ slot_name: replicaSlotName(REPLICA), active: true }]) })
      await admin(primary, 'INSERT INTO script_runs DEFAULT VALUES', 'app')
      await eventually(async () => { expect(await scriptRuns(replica)).toBe(2) })
      await expect(admin(replica, 'INSERT INTO script_runs DEFAULT VALUES', 'app')).rejects.toThrow(/read-only transaction/)
    })

    it('promotes the replica to a writable primary and drops its slot on the former primary', { timeout }, async () => {
      const replicas = target?.replicaOrchestrator ?? o
      const promoted = await replicas.promote(REPLICA)
      expect(promoted).toMatchObject({ state: 'running', role: 'primary', port: replica.port })
      await admin(promoted, 'INSERT INTO script_runs DEFAULT VALUES', 'app')
      expect(await scriptRuns(promoted)).toBe(3)
      await eventually(async () => { expect(await physicalSlots()).toEqual([]) })
      expect(await replicas.promote(REPLICA)).toMatchObject({ role: 'primary' }) // already a primary: nothing to do
      replica = promoted
    })

    it('removes instances, leaving no server behind; removing again is a no-op', { timeout }, async () => {
      const replicas = target?.replicaOrchestrator ?? o
      for (const [orchestrator, status, host] of [[replicas, replica, target?.replicaHost], [o, primary, target?.primaryHost]] as const) {
        await orchestrator.removeInstance(status.instanceId)
        expect(await orchestrator.status(status.instanceId)).toBeUndefined()
        expect((await orchestrator.list()).map(s => s.instanceId)).not.toContain(status.instanceId)
        await expect(query(asOwner(host ?? '', status), 'SELECT 1')).rejects.toThrow()
        await expect(orchestrator.removeInstance(status.instanceId)).resolves.toBeUndefined()
      }
    })
  })
}
