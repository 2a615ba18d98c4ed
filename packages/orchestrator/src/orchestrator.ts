/**
 * What an orchestrator does with PostgreSQL instances, independent of how it runs them (local processes here; a
 * Docker Swarm orchestrator can implement the same interface). A reconciler drives it with desired instance specs
 * and reads back observed status; it never needs to know where the data directory or the process lives.
 */
import type { BackupRun, InstanceRestore, InstanceSpec, InstanceState } from '@pgmesh/model'

export interface InstanceStatus {
  instanceId: string
  state: InstanceState
  /** From pg_is_in_recovery(); known only while running. */
  role?: 'primary' | 'replica'
  port: number
  /** `major.minor` of the running server, or the major of the data directory while not running. */
  postgresVersion: string
  /** Running with a change written that needs a restart (see InstanceSpec.deferRestart). */
  pendingRestart?: boolean
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
  /**
   * Idempotent: creates what is missing, applies config changes (reload or restart as needed, or a deferred restart:
   * see InstanceSpec.deferRestart), leaves it running.
   */
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
  /**
   * One pgBackRest backup of a running primary whose spec configured backups, each line pgBackRest prints handed to
   * `onLine`; rejects when it fails or `signal` aborts it (pgBackRest is stopped with SIGTERM). Optional: an
   * orchestrator without it cannot take backups yet.
   */
  backup?: (instanceId: string, run: BackupRun, onLine: (line: string) => void, signal?: AbortSignal) => Promise<void>
  /**
   * An in-place restore of a primary: stops it, replaces its data directory with `pgbackrest restore` from the
   * source's repository (each line pgBackRest prints handed to `onLine`), keeps the instance's own configuration
   * (port, addresses, pg_hba) with WAL archiving and synchronous replication off, starts it, and resolves once
   * recovery has ended and the server takes writes. Idempotent: run again after an interruption, it restores again.
   * Optional: an orchestrator without it cannot restore yet.
   */
  restore?: (instanceId: string, restore: InstanceRestore, onLine: (line: string) => void, signal?: AbortSignal) => Promise<void>
  /** Returns the function that unsubscribes. */
  onEvent (listener: (event: InstanceEvent) => void): () => void
  /** Stops watching the instances; they keep running. */
  close (): Promise<void>
}
