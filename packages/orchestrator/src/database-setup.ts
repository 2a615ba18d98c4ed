import { createHash, createHmac, pbkdf2, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import { type DatabaseSetup, type DatabaseUser, InvalidInputError, REPLICATION_SCHEMA } from '@pgmesh/model'
import { escapeIdentifier, escapeLiteral, type ClientBase } from 'pg'

const pbkdf2Async = promisify(pbkdf2)

/** The anchor's allow-list: boolean role attributes only, mapped to the pg_authid column each one sets. */
const ROLE_ATTRIBUTES: Record<string, { column: string, value: boolean }> = {
  SUPERUSER: { column: 'rolsuper', value: true },
  NOSUPERUSER: { column: 'rolsuper', value: false },
  CREATEDB: { column: 'rolcreatedb', value: true },
  NOCREATEDB: { column: 'rolcreatedb', value: false },
  CREATEROLE: { column: 'rolcreaterole', value: true },
  NOCREATEROLE: { column: 'rolcreaterole', value: false },
  INHERIT: { column: 'rolinherit', value: true },
  NOINHERIT: { column: 'rolinherit', value: false },
  LOGIN: { column: 'rolcanlogin', value: true },
  NOLOGIN: { column: 'rolcanlogin', value: false },
  REPLICATION: { column: 'rolreplication', value: true },
  NOREPLICATION: { column: 'rolreplication', value: false },
  BYPASSRLS: { column: 'rolbypassrls', value: true },
  NOBYPASSRLS: { column: 'rolbypassrls', value: false }
}

interface RoleAttribute { keyword: string, column: string, value: boolean }

/** Validates attributes against the allow-list; only these fixed keywords are ever interpolated into SQL. */
export function roleAttributes (attributes: readonly string[]): RoleAttribute[] {
  return attributes.map(attribute => {
    const keyword = attribute.toUpperCase()
    const flag = ROLE_ATTRIBUTES[keyword]
    if (flag === undefined) throw new InvalidInputError(`unsupported role attribute '${attribute}'`)
    return { keyword, ...flag }
  })
}

/** SASLprep as node-postgres applies it (RFC 4013 mappings + NFKC), so a verifier check agrees with pg's login. */
function saslprep (password: string): string {
  return password
    .replace(/[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g, ' ')
    .replace(/[\u00AD\u034F\u1806\u180B-\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, '')
    .normalize('NFKC')
}

/**
 * True when a stored SCRAM-SHA-256 verifier was made from this password. Lets a reconcile leave an unchanged
 * password alone instead of rewriting pg_authid every pass; any doubt answers false, which merely sets it again.
 */
export async function scramVerifierMatches (verifier: string | null, password: string): Promise<boolean> {
  const match = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier ?? '')
  if (match === null) return false
  const [, iterations = '', salt = '', storedKey = '', serverKey = ''] = match
  const salted = await pbkdf2Async(saslprep(password), Buffer.from(salt, 'base64'), Number(iterations), 32, 'sha256')
  const clientKey = createHmac('sha256', salted).update('Client Key').digest()
  const expectedStored = createHash('sha256').update(clientKey).digest()
  const expectedServer = createHmac('sha256', salted).update('Server Key').digest()
  const stored = Buffer.from(storedKey, 'base64')
  const server = Buffer.from(serverKey, 'base64')
  return stored.length === expectedStored.length && server.length === expectedServer.length &&
    timingSafeEqual(stored, expectedStored) && timingSafeEqual(server, expectedServer)
}

/**
 * Sets a password without it reaching any log or statistics: the server hashes it (exact SASLprep), and the
 * statement is kept out of the statement log, the error log and pg_stat_statements.
 */
async function setPassword (client: ClientBase, username: string, password: string): Promise<void> {
  await client.query('BEGIN')
  try {
    await client.query("SET LOCAL log_statement = 'none'")
    await client.query('SET LOCAL log_min_duration_statement = -1')
    await client.query("SET LOCAL log_min_error_statement = 'panic'")
    await client.query('SET LOCAL pg_stat_statements.track_utility = off')
    await client.query(`ALTER ROLE ${escapeIdentifier(username)} WITH PASSWORD ${escapeLiteral(password)}`)
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK')
    throw new Error(`setting the password of role '${username}' failed`, { cause: err })
  }
}

/** Creates or updates one user: attributes, password, granted roles. Never drops anything (as the anchor). */
export async function ensureUser (client: ClientBase, user: DatabaseUser, serverVersionNum: number): Promise<void> {
  const attributes = roleAttributes(user.attributes ?? [])
  const role = escapeIdentifier(user.username)
  const existing = await client.query<Record<string, unknown> & { rolpassword: string | null }>(
    'SELECT * FROM pg_catalog.pg_authid WHERE rolname = $1', [user.username])
  const current = existing.rows[0]
  if (current === undefined) {
    const keywords = attributes.map(a => a.keyword).join(' ')
    await client.query(`CREATE ROLE ${role}${keywords === '' ? '' : ` WITH ${keywords}`}`)
  } else {
    const changed = attributes.filter(a => current[a.column] !== a.value).map(a => a.keyword)
    if (changed.length > 0) await client.query(`ALTER ROLE ${role} WITH ${changed.join(' ')}`)
  }
  if (user.password !== undefined && !(await scramVerifierMatches(current?.rolpassword ?? null, user.password))) {
    await setPassword(client, user.username, user.password)
  }
  for (const granted of user.roles ?? []) {
    const member = await client.query(
      `SELECT 1 FROM pg_catalog.pg_auth_members m
         JOIN pg_catalog.pg_roles r ON r.oid = m.roleid JOIN pg_catalog.pg_roles u ON u.oid = m.member
        WHERE r.rolname = $1 AND u.rolname = $2`, [granted, user.username])
    if (member.rowCount === 0) {
      // Memberships carry their own INHERIT option from PostgreSQL 16 on; 15 inherits by the member's attribute.
      const inherit = serverVersionNum >= 160000 ? ' WITH INHERIT TRUE' : ''
      await client.query(`GRANT ${escapeIdentifier(granted)} TO ${role}${inherit}`)
    }
  }
}

/** Runs a script's statements in one transaction, so a failed script leaves nothing half-done to trip its retry. */
export async function runScript (client: ClientBase, statements: readonly string[]): Promise<void> {
  if (statements.length === 0) return
  await client.query('BEGIN')
  try {
    for (const statement of statements) await client.query(statement)
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK')
    throw err
  }
}

export async function ensureDatabaseExists (client: ClientBase, name: string): Promise<void> {
  const found = await client.query('SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1', [name])
  if (found.rowCount === 0) await client.query(`CREATE DATABASE ${escapeIdentifier(name)}`)
}

export async function ensureDatabaseOwner (client: ClientBase, database: string, owner: string): Promise<void> {
  const found = await client.query(
    'SELECT 1 FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles r ON r.oid = d.datdba WHERE d.datname = $1 AND r.rolname = $2',
    [database, owner])
  if (found.rowCount === 0) await client.query(`ALTER DATABASE ${escapeIdentifier(database)} OWNER TO ${escapeIdentifier(owner)}`)
}

/**
 * The DDL-capture schema, created by the control plane's superuser in a database no user may create schemas in
 * yet (its owner is set last): its SECURITY DEFINER event triggers run in every session, so whoever created it
 * first could plant code they run. No privilege on it for anyone else; @pgmesh/replication grants USAGE when it
 * installs the capture, and refuses to if anything in it belongs to another role (the second guard).
 */
export async function ensureReplicationSchema (client: ClientBase): Promise<void> {
  const schema = escapeIdentifier(REPLICATION_SCHEMA)
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
  const { rows } = await client.query<{ owner: string, mine: boolean }>(
    `SELECT r.rolname AS owner, r.rolname = current_user AS mine
       FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1`, [REPLICATION_SCHEMA])
  const owner = rows[0]
  if (owner !== undefined && !owner.mine) {
    throw new Error(`schema ${REPLICATION_SCHEMA} belongs to ${owner.owner}, not to the control plane: drop it as a superuser`)
  }
  await client.query(`REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC`)
}

/** Which of a database's run-once scripts already ran on an instance (kept by the orchestrator across restarts). */
export interface ScriptsDone { postInit: boolean, postDatabaseCreate: boolean }

/**
 * Users, database, owner and the run-once scripts of a primary, in the order the anchor applies them, with the
 * replication schema made right after the database, before its scripts run and before it gets its owner. `connect`
 * opens a superuser connection to a database of the instance; `markDone` persists script completion before the
 * next step, so a failure after a script never runs it twice.
 */
export async function setupDatabase (
  connect: <T>(database: string, work: (client: ClientBase) => Promise<T>) => Promise<T>,
  setup: DatabaseSetup, done: ScriptsDone, markDone: (script: keyof ScriptsDone) => Promise<void>
): Promise<void> {
  const owners = (setup.users ?? []).filter(u => u.dbOwner === true)
  if (owners.length > 1) throw new InvalidInputError('at most one user can be the database owner')
  await connect('postgres', async client => {
    if (!done.postInit) {
      await runScript(client, setup.scripts?.postInit ?? [])
      await markDone('postInit')
    }
    const { rows } = await client.query<{ version_num: number }>("SELECT current_setting('server_version_num')::int AS version_num")
    for (const user of setup.users ?? []) await ensureUser(client, user, rows[0]?.version_num ?? 0)
    await ensureDatabaseExists(client, setup.name)
  })
  if (!done.postDatabaseCreate) {
    await connect(setup.name, async client => {
      await ensureReplicationSchema(client)
      await runScript(client, setup.scripts?.postDatabaseCreate ?? [])
    })
    await markDone('postDatabaseCreate')
  }
  const owner = owners[0]
  if (owner !== undefined) await connect('postgres', async client => { await ensureDatabaseOwner(client, setup.name, owner.username) })
}
