import { access, chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { join } from 'node:path'
import { type InstanceSpec, InvalidInputError } from '@pgmesh/model'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type InstanceEvent, type InstanceStatus, isPortBindable } from '@pgmesh/orchestrator'
import { admin, eventually, query } from '@pgmesh/orchestrator-compliance'
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

  it('an instance found down when the daemon starts again waits for an ensure (its host may have been removed meanwhile)', async () => {
    await orchestrator.close()
    process.kill(primary.pid ?? 0, 'SIGKILL')
    await eventually(async () => { expect(await isProcessAlive(primary.pid ?? 0)).toBe(false) })
    orchestrator = await ProcessOrchestrator.open({ dataDir, logger: pino({ level: 'silent' }), superviseIntervalMs: 100 })
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(await orchestrator.status(primary.instanceId)).toMatchObject({ state: 'crashed' })
    primary = await orchestrator.ensureInstance(primarySpec)
    expect(primary.state).toBe('running')
  })

  it('removes an instance leaving no process, port, directory or socket', async () => {
    const instanceDir = join(dataDir, 'instances', primary.instanceId)
    await access(instanceDir)
    await orchestrator.removeInstance(primary.instanceId)
    expect(await isProcessAlive(primary.pid ?? 0)).toBe(false)
    expect(await isPortBindable('127.0.0.1', primary.port)).toBe(true)
    await expect(access(instanceDir)).rejects.toThrow()
    await expect(access(primary.admin.host)).rejects.toThrow()
  })
})

describe('a server that cannot start', () => {
  it('fails with what the server said, from the collector\'s log: a port another process holds', async () => {
    const taken = createServer()
    await new Promise<void>(resolve => { taken.listen(0, '127.0.0.1', resolve) })
    const port = (taken.address() as AddressInfo).port
    try {
      const error = await orchestrator.ensureInstance({ ...base, instanceId: 'db-n9-busy', port }).then(() => undefined, (err: unknown) => err as Error)
      expect(error?.message).toMatch(/starting db-n9-busy failed; the server said:/)
      expect(error?.message).toContain('could not bind IPv4 address "127.0.0.1": Address already in use')
      expect(error?.message).toContain(`Is another postmaster already running on port ${port}?`)
      expect(error?.message).not.toContain('redirecting log output to logging collector process')
    } finally {
      taken.close()
      await orchestrator.removeInstance('db-n9-busy').catch(() => undefined)
    }
  })
})
