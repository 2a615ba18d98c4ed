import type { BackupRepositorySpec, RestoreRepositorySpec } from '../database-spec/schemas.js'

/**
 * What an instance should be, as the planner decides it and an orchestrator carries it out; and how the control
 * plane names what it creates on every instance. Shared vocabulary, so the planner needs no orchestrator.
 */

/** The physical slot a streaming replica uses on its primary. */
export function replicaSlotName (instanceId: string): string {
  return `pgmesh_${instanceId.replaceAll('-', '_')}`.slice(0, 63)
}

/** Values a postgresql.conf setting can take; numbers and booleans are written unquoted. */
export type SettingValue = string | number | boolean

/** A role the control plane keeps on an instance (the anchor's DatabaseUserSpec). */
export interface DatabaseUser {
  username: string
  /** Write-only: set when given, never logged, never returned. Omitted = keep the current password. */
  password?: string
  /** Becomes the owner of the database (at most one user should have it). */
  dbOwner?: boolean
  /** Role attributes from the allow-list (SUPERUSER … NOBYPASSRLS); anything else is rejected. */
  attributes?: string[]
  /** Roles granted to the user (with inheritance). */
  roles?: string[]
}

/** The database an instance serves, with its users and the scripts that run once when it is created. */
export interface DatabaseSetup {
  name: string
  users?: DatabaseUser[]
  scripts?: {
    /** Run once in the `postgres` database before the users are created, in one transaction. */
    postInit?: string[]
    /** Run once in the new database right after it is created, in one transaction. */
    postDatabaseCreate?: string[]
  }
}

export interface InstanceSpec {
  /** Also the directory name under `<dataDir>/instances/`: lowercase letters, digits, `-` and `_`. */
  instanceId: string
  /** `major` or `major.minor`; the major selects the binaries. Default: the newest installed major. */
  postgresVersion?: string
  /** Fixed port, or 0 for a free port chosen once and kept for the life of the instance. */
  port: number
  /** Addresses Postgres listens on (`listen_addresses`). */
  listenAddresses: string[]
  /**
   * Addresses (IP or CIDR) of the hosts that connect as the control plane's superuser: streaming replicas,
   * pg_basebackup and the logical replication peers of the mesh.
   */
  peerAddresses?: string[]
  /** Merged over the defaults; settings the orchestrator owns (port, sockets, listen addresses) cannot be overridden. */
  postgresqlConf?: Record<string, SettingValue>
  /** One rule per entry, placed after the system rules and before the catch-all scram rule. */
  pgHbaConf?: string[]
  /** One mapping per entry. */
  pgIdentConf?: string[]
  /**
   * Creates the instance as a streaming replica of this primary (pg_basebackup with a physical slot). Only read
   * while the instance is a replica: for a new instance, and to follow a primary that moved. A promoted instance
   * is never demoted again (remove and recreate it instead).
   */
  primary?: { host: string, port: number }
  /**
   * A running server whose change needs a restart (a setting read only at start, a new port or image) is not
   * restarted: the change is written, what can be reloaded is, and the status reports `pendingRestart` until an
   * ensureInstance without this flag (or a restart) applies it. Rolling updates restart one instance at a time.
   */
  deferRestart?: boolean
  /** Users, database and scripts; applied on primaries only (replicas get them from their primary). */
  database?: DatabaseSetup
  /** The anchor's `orchestrator_opts.swarm`: read by the swarm orchestrator, ignored by the process one. */
  swarm?: SwarmInstanceOptions
  /** pgBackRest: WAL archived to these repositories (by the primary), its stanza kept there. Absent: no archiving. */
  backup?: InstanceBackup
  /**
   * A new primary is made from this backup instead of initdb (the spec's or node's restore_config): read only while
   * the instance has no data directory yet.
   */
  restore?: InstanceRestore
}

/** The node's effective backup_config as an instance needs it (repository paths are per database and node). */
export interface InstanceBackup {
  databaseId: string
  nodeName: string
  /** As in the spec, secrets included: they go into a 0600 config file only, never into arguments or logs. */
  repositories: BackupRepositorySpec[]
}

/**
 * One in-place restore of a primary from a pgBackRest repository: the source node's repository path (the anchor's
 * layout) and the user's restore_options (`type`, `target`, `set`, ...).
 */
export interface InstanceRestore {
  sourceDatabaseId: string
  sourceNodeName: string
  /** The backup's database, renamed to the spec's database_name once restored. */
  sourceDatabaseName: string
  databaseName: string
  /** As in the request, secrets included: they go into a 0600 config file only, never into arguments or logs. */
  repository: RestoreRepositorySpec
  options: Record<string, string>
}

/** One on-demand or scheduled backup, as the node's primary's orchestrator runs it. */
export interface BackupRun {
  type: 'full' | 'diff' | 'incr'
  annotations?: Record<string, string>
  /** pgBackRest options (names without `--`), checked by pgbackrestOptionProblem. */
  options?: Record<string, string>
}

export interface SwarmInstanceOptions {
  /** The Postgres image instead of the host's default. */
  image?: string
  /** Added to the service and container labels (keys starting with `pgedge.` are rejected by the spec validation). */
  extraLabels?: Record<string, string>
  /** Host paths bind-mounted into the container (the anchor's extra_volumes), e.g. a posix backup repository. */
  extraVolumes?: ExtraVolume[]
}

export interface ExtraVolume {
  /** Absolute, on the host that runs the instance. */
  hostPath: string
  /** Absolute, inside the container; never one of the container's own paths. */
  destinationPath: string
}

/**
 * running: accepts connections. starting: the postmaster is up but does not accept connections yet (startup,
 * crash recovery). stopped: stopped on purpose. crashed: should run but the postmaster is gone (the supervisor is
 * restarting it).
 */
export type InstanceState = 'running' | 'starting' | 'stopped' | 'crashed'

/** A replication node as its peers reach it. */
export interface NodeSpec {
  nodeName: string
  /** How the peers reach this node (libpq conninfo), e.g. from formatDsn. */
  dsn: string
}

/** A libpq key=value connection string (what pglogical and Spock take as node and provider DSNs). */
export function formatDsn (params: { host: string, port: number, dbname: string, user: string } & Record<string, string | number>): string {
  return Object.entries(params).map(([key, raw]) => {
    const value = String(raw)
    const plain = value !== '' && /^[^\s'\\]+$/.test(value)
    return `${key}=${plain ? value : `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`}`
  }).join(' ')
}
