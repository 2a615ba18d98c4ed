/**
 * What an orchestrator does with PostgreSQL instances, independent of how it runs them (local processes here; a
 * Docker Swarm orchestrator can implement the same interface). A reconciler drives it with desired instance specs
 * and reads back observed status; it never needs to know where the data directory or the process lives.
 */

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
  /** Users, database and scripts; applied on primaries only (replicas get them from their primary). */
  database?: DatabaseSetup
  /** The anchor's `orchestrator_opts.swarm`: read by the swarm orchestrator, ignored by the process one. */
  swarm?: SwarmInstanceOptions
}

export interface SwarmInstanceOptions {
  /** The Postgres image instead of the host's default. */
  image?: string
  /** Added to the service and container labels (keys starting with `pgedge.` are rejected by the spec validation). */
  extraLabels?: Record<string, string>
}

/**
 * running: accepts connections. starting: the postmaster is up but does not accept connections yet (startup,
 * crash recovery). stopped: stopped on purpose. crashed: should run but the postmaster is gone (the supervisor is
 * restarting it).
 */
export type InstanceState = 'running' | 'starting' | 'stopped' | 'crashed'

export interface InstanceStatus {
  instanceId: string
  state: InstanceState
  /** From pg_is_in_recovery(); known only while running. */
  role?: 'primary' | 'replica'
  port: number
  /** `major.minor` of the running server, or the major of the data directory while not running. */
  postgresVersion: string
  /** The postmaster's pid while it runs. */
  pid?: number
  /** How the control plane itself connects: superuser over the unix socket (`host` is the socket directory). */
  admin: { host: string, port: number, user: string }
}

/** Emitted by supervision, so a reconciler can requeue the instance. */
export type InstanceEvent =
  | { type: 'exited', instanceId: string, pid: number }
  | { type: 'restarted', instanceId: string, pid: number, attempt: number }
  | { type: 'restart_failed', instanceId: string, attempt: number, error: string, retryInMs: number }

export interface Orchestrator {
  /** Idempotent: creates what is missing, applies config changes (reload or restart as needed), leaves it running. */
  ensureInstance (spec: InstanceSpec): Promise<InstanceStatus>
  startInstance (instanceId: string): Promise<InstanceStatus>
  /** Stops the instance and keeps it stopped (supervision does not restart it) until started again. */
  stopInstance (instanceId: string): Promise<InstanceStatus>
  restartInstance (instanceId: string): Promise<InstanceStatus>
  /** Promotes a streaming replica to a primary. */
  promote (instanceId: string): Promise<InstanceStatus>
  /** Stops the instance and deletes everything it had: processes, directories, its slot on its primary. */
  removeInstance (instanceId: string): Promise<void>
  /** undefined when there is no such instance. */
  status (instanceId: string): Promise<InstanceStatus | undefined>
  list (): Promise<InstanceStatus[]>
  /** Returns the function that unsubscribes. */
  onEvent (listener: (event: InstanceEvent) => void): () => void
  /** Stops watching the instances; they keep running. */
  close (): Promise<void>
}
