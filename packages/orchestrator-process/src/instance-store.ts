import { createHash } from 'node:crypto'
import { join } from 'node:path'
import type { InstanceRecord } from '@pgmesh/orchestrator'

/** The shared record plus what only a process instance needs. */
export interface ProcessInstanceRecord extends InstanceRecord {
  /** initdb or pg_basebackup finished; a data directory without it is a half-made leftover and is redone. */
  initialized: boolean
  /** The pgBackRest config whose stanza was created and checked on this instance as a primary (a hash of it). */
  stanzaChecked?: string
  /** Made from a backup (spec.restore) and not adopted yet: its recovery must end first (see adoptRestoredDatabase). */
  restoredFrom?: { sourceDatabaseName: string, databaseName: string }
}

/** File (inside pgdata, so it travels with pg_basebackup and stays valid) holding every setting the orchestrator writes. */
export const MANAGED_CONF_FILE = 'pgmesh.conf'
export const INCLUDE_LINE = `include '${MANAGED_CONF_FILE}'`

const SOCKET_NAME_ROOM = '/.s.PGSQL.65535.lock'.length
const MAX_SOCKET_PATH = 107

/** Where an instance's files live: everything under one directory, so removing it leaves nothing behind. */
export class InstancePaths {
  readonly dir: string
  readonly pgdata: string
  readonly logDir: string
  readonly socketDir: string

  constructor (instancesDir: string, readonly instanceId: string) {
    this.dir = join(instancesDir, instanceId)
    this.pgdata = join(this.dir, 'pgdata')
    this.logDir = join(this.dir, 'log')
    const inside = join(this.dir, 'run')
    // Unix socket paths are limited to ~107 bytes; a deep data dir falls back to a short per-instance dir in /tmp.
    this.socketDir = inside.length + SOCKET_NAME_ROOM <= MAX_SOCKET_PATH
      ? inside
      : `/tmp/pgmesh-${createHash('sha256').update(this.dir).digest('hex').slice(0, 16)}`
  }

  /** The superuser's libpq password file (PGPASSFILE of the postmaster and pg_basebackup), 0600, postgres's. */
  get passfile (): string {
    return join(this.dir, 'pgpass')
  }

  /** pgBackRest's config file (0600: it holds repository keys), and its lock directory. */
  get pgbackrestConf (): string {
    return join(this.dir, 'pgbackrest.conf')
  }

  get pgbackrestLockDir (): string {
    return join(this.dir, 'pgbackrest-lock')
  }

  /** The postmaster's stdout/stderr before the logging collector takes over (startup failures land here). */
  get startupLog (): string {
    return join(this.logDir, 'startup.log')
  }
}
