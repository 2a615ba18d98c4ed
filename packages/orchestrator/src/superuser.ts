import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto'
import { SYSTEM_SUPERUSER } from '@pgmesh/model'
import type { ClientBase } from 'pg'
import { escapeLiteral } from 'pg'
import { scramVerifierMatches } from './database-setup.js'

/**
 * The control plane's superuser reaches other hosts' instances over TCP with a password (scram-sha-256 in pg_hba):
 * the cluster-wide one every host derives from the data key, never stored in the document. These put it where it is
 * needed without it appearing in SQL text, process arguments, environments or catalogs.
 */

const SCRAM_ITERATIONS = 4096

/**
 * A SCRAM-SHA-256 verifier of `password`, computed here: `ALTER ROLE … PASSWORD '<verifier>'` stores it as it is, so
 * the plain password never reaches the server (its statement log, pg_stat_statements or an error message). The
 * password is ASCII (base64url), for which SASLprep changes nothing.
 */
export function scramVerifier (password: string, salt: Buffer = randomBytes(16)): string {
  const salted = pbkdf2Sync(password, salt, SCRAM_ITERATIONS, 32, 'sha256')
  const storedKey = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest()
  const serverKey = createHmac('sha256', salted).update('Server Key').digest()
  return `SCRAM-SHA-256$${SCRAM_ITERATIONS}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`
}

/** Sets the superuser's password on a primary (over its socket) unless it already verifies; true when it wrote. */
export async function ensureSuperuserPassword (client: ClientBase, password: string): Promise<boolean> {
  const { rows } = await client.query<{ rolpassword: string | null }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [SYSTEM_SUPERUSER])
  if (await scramVerifierMatches(rows[0]?.rolpassword ?? null, password)) return false
  // READ WRITE: a fenced primary (default_transaction_read_only on) still takes the control plane's own role change.
  await client.query('BEGIN READ WRITE')
  try {
    await client.query(`ALTER ROLE ${SYSTEM_SUPERUSER} WITH PASSWORD ${escapeLiteral(scramVerifier(password))}`)
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw err
  }
  return true
}

/**
 * A libpq password file for the superuser (`~/.pgpass` format, any host, port and database). libpq reads it through
 * PGPASSFILE: the server is started with it in its environment (a path, not a secret), so its walreceiver
 * (primary_conninfo) and pglogical's workers (subscription DSNs) authenticate with no password in the conninfo or
 * in pglogical's catalogs; pg_basebackup gets the same variable. Written 0600, owned by the OS user Postgres runs as.
 */
export function superuserPassfile (password: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(password)) throw new Error('the superuser password must be base64url')
  return `*:*:*:${SYSTEM_SUPERUSER}:${password}\n`
}

/** The password for a connection as the superuser, or nothing before this host has the data key. */
export type SuperuserPassword = () => string | undefined
