import type { ClientBase } from 'pg'
import { describe, expect, it } from 'vitest'
import { type ScriptsDone, setupDatabase } from './database-setup.js'

/** Every statement setupDatabase sends, as `<database>: <text>`, answered just enough for a fresh instance. */
function recordingConnect (schemaOwner = { owner: 'pgmesh', mine: true }): { log: string[], connect: Parameters<typeof setupDatabase>[0] } {
  const log: string[] = []
  const connect = async <T>(database: string, work: (client: ClientBase) => Promise<T>): Promise<T> => {
    const client = {
      query: async (text: string) => {
        log.push(`${database}: ${text.replace(/\s+/g, ' ').trim()}`)
        if (text.includes('server_version_num')) return { rows: [{ version_num: 150000 }], rowCount: 1 }
        if (text.includes('pg_namespace')) return { rows: [schemaOwner], rowCount: 1 }
        return { rows: [], rowCount: 0 }
      }
    } as unknown as ClientBase
    return await work(client)
  }
  return { log, connect }
}

const setup = {
  name: 'app',
  users: [{ username: 'app_owner', password: 'pw', dbOwner: true, attributes: ['LOGIN'] }],
  scripts: { postInit: ['CREATE ROLE app_rw'], postDatabaseCreate: ['CREATE TABLE t (id int PRIMARY KEY)'] }
}

describe('setupDatabase', () => {
  // Attack (issue 16, finding 10): a database owner who creates schema pgmesh_repl first plants functions that the
  // SECURITY DEFINER event trigger later runs as superuser. Before the fix the schema appeared only at replication
  // setup, after the owner had the database.
  it('creates the replication schema, owned by the control plane, right after the database and before its scripts and owner', async () => {
    const { log, connect } = recordingConnect()
    const done: ScriptsDone = { postInit: false, postDatabaseCreate: false }
    await setupDatabase(connect, setup, done, async script => { done[script] = true })
    const at = (pattern: RegExp): number => log.findIndex(line => pattern.test(line))
    const createDatabase = at(/^postgres: CREATE DATABASE "app"$/)
    const createSchema = at(/^app: CREATE SCHEMA IF NOT EXISTS "pgmesh_repl"$/)
    const revoke = at(/^app: REVOKE ALL ON SCHEMA "pgmesh_repl" FROM PUBLIC$/)
    const script = at(/^app: CREATE TABLE t/)
    const owner = at(/^postgres: ALTER DATABASE "app" OWNER TO "app_owner"$/)
    expect(createDatabase).toBeGreaterThan(-1)
    expect(createSchema).toBeGreaterThan(createDatabase)
    expect(revoke).toBeGreaterThan(createSchema)
    expect(script).toBeGreaterThan(revoke)
    expect(owner).toBeGreaterThan(script)
  })

  it('refuses to go on when the schema already belongs to another role', async () => {
    const { connect } = recordingConnect({ owner: 'app_owner', mine: false })
    const done: ScriptsDone = { postInit: false, postDatabaseCreate: false }
    await expect(setupDatabase(connect, setup, done, async script => { done[script] = true }))
      .rejects.toThrow('schema pgmesh_repl belongs to app_owner, not to the control plane')
    expect(done.postDatabaseCreate).toBe(false)
  })

  it('does not touch the schema again once the database was set up (its scripts ran)', async () => {
    const { log, connect } = recordingConnect()
    await setupDatabase(connect, setup, { postInit: true, postDatabaseCreate: true }, async () => {})
    expect(log.some(line => line.includes('pgmesh_repl'))).toBe(false)
  })
})
