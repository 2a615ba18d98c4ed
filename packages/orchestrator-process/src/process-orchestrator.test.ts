import { access, chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidInputError } from '@pgmesh/model'
import { Client } from 'pg'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type InstanceEvent, type InstanceSpec, type InstanceStatus, isPortBindable, pickFreePort } from '@pgmesh/orchestrator'
import { ProcessOrchestrator } from './process-orchestrator.js'
import { isProcessAlive } from './system.js'

let dataDir: string
let orchestrator: ProcessOrchestrator
const events: InstanceEvent[] = []

const base = { listenAddresses: ['127.0.0.1'], peerAddresses: ['127.0.0.1'] }
const appSetup: InstanceSpec['database'] = {
  name: 'app',
  users: [
    { username: 'app_admin', password: 'first secret', dbOwner: true, attributes: ['LOGIN', 'CREATEDB'], roles: ['app_read'] },
    { username: 'reporter', password: 'r3port', attributes: ['login'] }
  ],
  scripts: {
    postInit: ['CREATE ROLE app_read NOLOGIN'],
    postDatabaseCreate: ['CREATE TABLE script_runs (id serial PRIMARY KEY)', 'INSERT INTO script_runs DEFAULT VALUES']
  }
}
const primarySpec: InstanceSpec = { ...base, instanceId: 'db-n1-host1', port: 0, database: appSetup }

async function query<R extends Record<string, unknown>> (
  target: { host: string, port: number, user?: string, password?: string, database?: string }, text: string, values: unknown[] = []
): Promise<R[]> {
  const client = new Client({ user: 'pgmesh', database: 'postgres', ...target, connectionTimeoutMillis: 3_000 })
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end()
  }
}

const admin = async <R extends Record<string, unknown>>(status: InstanceStatus, text: string, database = 'postgres') =>
  await query<R>({ ...status.admin, database }, text)

async function eventually<T> (check: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await check()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
}

beforeAll(async () => {
  dataDir = await mkdtemp('/tmp/pgmesh-orch-')
  await chmod(dataDir, 0o755) // the postgres OS user must traverse it when the tests run as root
  orchestrator = await ProcessOrchestrator.open({ dataDir, logger: pino({ level: 'silent' }), superviseIntervalMs: 100 })
  orchestrator.onEvent(event => { events.push(event) })
})

afterAll(async () => {
  // Stop every postgres this file started, whatever state the tests left them in.
  await orchestrator?.close()
  for (const status of await orchestrator?.list() ?? []) {
    await orchestrator.removeInstance(status.instanceId).catch(() => undefined)
  }
  for (const instanceId of await readdir(join(dataDir, 'instances')).catch(() => [])) {
    const pid = Number((await readFile(join(dataDir, 'instances', instanceId, 'pgdata', 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0])
    if (pid > 0) process.kill(pid, 'SIGKILL')
  }
  await rm(dataDir, { recursive: true, force: true })
})

describe('process orchestrator (real PostgreSQL)', () => {
  let primary: InstanceStatus

  it('creates a running primary with the replication settings and answers queries', async () => {
    const started = Date.now()
    primary = await orchestrator.ensureInstance(primarySpec)
    console.info(`create primary (initdb + start + database setup): ${Date.now() - started} ms`)
    expect(primary).toMatchObject({ state: 'running', role: 'primary', instanceId: 'db-n1-host1' })
    expect(primary.postgresVersion).toMatch(/^\d+\.\d+$/)
    expect(primary.port).toBeGreaterThanOrEqual(5432)
    expect(primary.port).toBeLessThanOrEqual(15432)
    const [row] = await admin<Record<string, string>>(primary, `SELECT current_setting('wal_level') AS wal_level,
      current_setting('track_commit_timestamp') AS track_commit_timestamp,
      current_setting('shared_preload_libraries') AS libraries,
      current_setting('pglogical.conflict_resolution') AS resolution,
      current_setting('hot_standby_feedback') AS feedback,
      current_setting('max_wal_senders') AS senders,
      current_setting('listen_addresses') AS listen`)
    expect(row).toEqual({
      wal_level: 'logical', track_commit_timestamp: 'on', libraries: 'pg_stat_statements,pglogical',
      resolution: 'last_update_wins', feedback: 'on', senders: '16', listen: '127.0.0.1'
    })
  })

  it('creates users with attributes, roles, the database owner, and runs scripts once', async () => {
    const owner = await query<{ owner: string }>({ host: '127.0.0.1', port: primary.port, user: 'app_admin', password: 'first secret', database: 'app' },
      'SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()')
    expect(owner).toEqual([{ owner: 'app_admin' }])
    const roles = await admin<{ rolname: string, rolcanlogin: boolean, rolcreatedb: boolean, member_of: string[] }>(primary, `
      SELECT rolname, rolcanlogin, rolcreatedb,
             ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid)::text[] AS member_of
        FROM pg_roles r WHERE rolname IN ('app_admin', 'reporter', 'app_read') ORDER BY rolname`)
    expect(roles).toEqual([
      { rolname: 'app_admin', rolcanlogin: true, rolcreatedb: true, member_of: ['app_read'] },
      { rolname: 'app_read', rolcanlogin: false, rolcreatedb: false, member_of: [] },
      { rolname: 'reporter', rolcanlogin: true, rolcreatedb: false, member_of: [] }
    ])

    const verifierBefore = await admin<{ rolpassword: string }>(primary, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app_admin'")
    await orchestrator.ensureInstance(primarySpec)
    expect(await admin(primary, 'SELECT count(*)::int AS runs FROM script_runs', 'app')).toEqual([{ runs: 1 }])
    // An unchanged password is recognised from its verifier and not rewritten (same salt).
    expect(await admin(primary, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app_admin'")).toEqual(verifierBefore)

    const users = appSetup.users?.map(u => u.username === 'app_admin' ? { ...u, password: 'second secret' } : u)
    await orchestrator.ensureInstance({ ...primarySpec, database: { ...appSetup, users } })
    const login = { host: '127.0.0.1', port: primary.port, user: 'app_admin', database: 'app' }
    await expect(query({ ...login, password: 'second secret' }, 'SELECT 1')).resolves.toHaveLength(1)
    await expect(query({ ...login, password: 'first secret' }, 'SELECT 1')).rejects.toThrow(/password authentication failed/)
    const logs = await Promise.all((await readdir(join(dataDir, 'instances', primary.instanceId, 'log')))
      .map(async f => await readFile(join(dataDir, 'instances', primary.instanceId, 'log', f), 'utf8')))
    expect(logs.join('')).not.toContain('second secret')

    await expect(orchestrator.ensureInstance({
      ...primarySpec, database: { ...appSetup, users: [{ username: 'x', attributes: ['LOGIN VALID UNTIL'] }] }
    })).rejects.toBeInstanceOf(InvalidInputError)
  })

  it('keeps a port-0 port across stop, start, restart and re-ensure', async () => {
    const restarted = await orchestrator.restartInstance(primary.instanceId)
    expect(restarted.port).toBe(primary.port)
    expect(restarted.pid).not.toBe(primary.pid)
    expect((await orchestrator.stopInstance(primary.instanceId)).state).toBe('stopped')
    expect(await isPortBindable('127.0.0.1', primary.port)).toBe(true)
    const started = await orchestrator.startInstance(primary.instanceId)
    expect(started).toMatchObject({ state: 'running', port: primary.port })
    primary = await orchestrator.ensureInstance(primarySpec)
    expect(primary.port).toBe(started.port)
  })

  it('reloads for a reloadable setting and restarts for one that needs a restart', async () => {
    const reloaded = await orchestrator.ensureInstance({ ...primarySpec, postgresqlConf: { work_mem: '8MB' } })
    expect(reloaded.pid).toBe(primary.pid)
    expect(await admin(reloaded, "SELECT current_setting('work_mem') AS v")).toEqual([{ v: '8MB' }])

    const withHbaRule = await orchestrator.ensureInstance({
      ...primarySpec, postgresqlConf: { work_mem: '8MB' }, pgHbaConf: ['host app reporter 127.0.0.1/32 reject']
    })
    expect(withHbaRule.pid).toBe(primary.pid)
    await expect(query({ host: '127.0.0.1', port: primary.port, user: 'reporter', password: 'r3port', database: 'app' }, 'SELECT 1'))
      .rejects.toThrow(/rejects connection/)

    const restarted = await orchestrator.ensureInstance({ ...primarySpec, postgresqlConf: { work_mem: '8MB', max_connections: 50 } })
    expect(restarted.pid).not.toBe(primary.pid)
    expect(await admin(restarted, "SELECT current_setting('max_connections') AS v, current_setting('work_mem') AS w"))
      .toEqual([{ v: '50', w: '8MB' }])
    primary = restarted
  })

  it('restarts a postmaster killed with SIGKILL and reports it', async () => {
    const killedPid = primary.pid ?? 0
    events.length = 0
    const started = Date.now()
    process.kill(killedPid, 'SIGKILL')
    const restarted = await eventually(async () => {
      const event = events.find(e => e.type === 'restarted')
      if (event === undefined) throw new Error('not restarted yet')
      return event
    })
    console.info(`kill -9 to restarted: ${Date.now() - started} ms`)
    expect(events[0]).toEqual({ type: 'exited', instanceId: primary.instanceId, pid: killedPid })
    expect(restarted).toMatchObject({ instanceId: primary.instanceId })
    primary = await eventually(async () => {
      const status = await orchestrator.status(primary.instanceId)
      if (status?.state !== 'running') throw new Error(`state ${status?.state}`)
      return status
    })
    expect(primary.pid).not.toBe(killedPid)
    expect(await admin(primary, 'SELECT count(*)::int AS runs FROM script_runs', 'app')).toEqual([{ runs: 1 }])
  })

  it('a restarted daemon adopts the running instances and supervises them', async () => {
    await orchestrator.close()
    orchestrator = await ProcessOrchestrator.open({ dataDir, logger: pino({ level: 'silent' }), superviseIntervalMs: 100 })
    events.length = 0
    orchestrator.onEvent(event => { events.push(event) })
    expect(await orchestrator.status(primary.instanceId)).toMatchObject({ state: 'running', pid: primary.pid })
    process.kill(primary.pid ?? 0, 'SIGKILL')
    await eventually(async () => { expect(events.map(e => e.type)).toEqual(['exited', 'restarted']) })
    primary = await orchestrator.status(primary.instanceId) ?? primary
    expect(primary.state).toBe('running')
  })

  describe('streaming replica', () => {
    let replica: InstanceStatus
    let fixedPort: number

    it('clones the primary over a slot, streams and refuses writes', async () => {
      fixedPort = await pickFreePort(['127.0.0.1'], new Set([primary.port]))
      const started = Date.now()
      replica = await orchestrator.ensureInstance({
        ...base, instanceId: 'db-n1-host2', port: fixedPort, primary: { host: '127.0.0.1', port: primary.port }, database: appSetup
      })
      console.info(`create replica (pg_basebackup + start): ${Date.now() - started} ms`)
      expect(replica).toMatchObject({ state: 'running', role: 'replica', port: fixedPort })
      expect(await admin(primary, "SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'"))
        .toEqual([{ slot_name: 'pgmesh_db_n1_host2', active: true }])

      await admin(primary, 'INSERT INTO script_runs DEFAULT VALUES', 'app')
      await eventually(async () => {
        expect(await admin(replica, 'SELECT count(*)::int AS runs FROM script_runs', 'app')).toEqual([{ runs: 2 }])
      })
      await expect(admin(replica, 'INSERT INTO script_runs DEFAULT VALUES', 'app')).rejects.toThrow(/read-only transaction/)
    })

    it('promotes the replica to a writable primary and drops its slot on the old primary', async () => {
      const started = Date.now()
      const promoted = await orchestrator.promote(replica.instanceId)
      console.info(`promote: ${Date.now() - started} ms`)
      expect(promoted).toMatchObject({ state: 'running', role: 'primary', port: fixedPort })
      await admin(promoted, 'INSERT INTO script_runs DEFAULT VALUES', 'app')
      expect(await admin(primary, "SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical'")).toEqual([])
      replica = promoted
    })

    it('removes an instance leaving no process, port, directory or socket', async () => {
      const instanceDir = join(dataDir, 'instances', replica.instanceId)
      await access(instanceDir)
      await orchestrator.removeInstance(replica.instanceId)
      expect(await isProcessAlive(replica.pid ?? 0)).toBe(false)
      expect(await isPortBindable('127.0.0.1', fixedPort)).toBe(true)
      await expect(access(instanceDir)).rejects.toThrow()
      await expect(access(replica.admin.host)).rejects.toThrow()
      expect(await orchestrator.status(replica.instanceId)).toBeUndefined()
      expect((await orchestrator.list()).map(s => s.instanceId)).toEqual([primary.instanceId])
      await orchestrator.removeInstance(replica.instanceId) // idempotent
    })
  })
})
