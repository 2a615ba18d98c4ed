// The v1 API's JSON shapes as a client sees them (the anchor's fields plus pgmesh's documented extensions; see
// spec/openapi.json). The spec, the task record and the task log are the model's own types; the rest are response shapes that only
// exist on the wire, so they are declared here rather than imported from the daemon's packages.
import type { DatabaseSpec, DatabaseState, Task, TaskLog, TaskLogEntry, TaskScope, TaskStatus } from '@pgmesh/model'

export type { DatabaseSpec, DatabaseState, Task, TaskLog, TaskLogEntry, TaskScope, TaskStatus }

/** A task as responses show it: the model's record without pgmesh's internal fields. */
export type ApiTask = Omit<Task, 'remove_hosts' | 'force' | 'origin_host'>

export interface VersionInfo { version: string, revision: string, revision_time: string, arch: string }

export interface JoinToken { token: string, server_urls: string[] }
/** A bearer token of the API as listed (its secret is only in the answer that created it). */
export interface ApiToken { id: string, name: string, role: 'viewer' | 'operator', created_at: string, expires_at?: string }

export interface ComponentStatus { healthy: boolean, error?: string, details?: Record<string, unknown> }

export type HostState = 'healthy' | 'unreachable' | 'degraded' | 'unknown'

export interface Host {
  id: string
  orchestrator: 'process' | 'swarm'
  data_dir: string
  peer_addresses: string[]
  client_addresses: string[]
  /** pgmesh: the host's API base URL. */
  api_url: string
  cpus?: number
  memory?: string
  status: { state: HostState, updated_at?: string, components: Record<string, ComponentStatus> }
  /** pgmesh: the host's pgmesh version. */
  version?: string
}

export interface Cluster {
  id: string
  status: { state: 'available' | 'error' }
  hosts: Host[]
  document?: { heads: string[] }
}

export interface Subscription {
  provider_node: string
  name: string
  status: string
  error?: string
  failing_since?: string
  /** pgmesh: bytes of the provider's WAL this subscriber has yet to confirm, as the provider reports it. */
  lag_bytes?: number
}

export interface Instance {
  id: string
  host_id: string
  node_name: string
  state: string
  created_at?: string
  updated_at?: string
  status_updated_at?: string
  error?: string
  connection_info?: { addresses: string[], port: number }
  postgres?: { version?: string, role?: 'primary' | 'replica', patroni_state?: string, pending_restart?: boolean, [key: string]: unknown }
  spock?: {
    extension?: string
    read_only?: string
    version?: string
    subscriptions: Subscription[]
    unreplicated_ddl?: { count: number, last: { logged_at: string, role: string, statement: string, reason: string } }
  }
}

/** pgmesh: a field two hosts wrote concurrently, until an update settles it. */
export interface FieldConflict { path: string, values: unknown[], hosts: string[] }

export interface DatabaseSummary {
  id: string
  tenant_id?: string
  created_at: string
  updated_at: string
  state: DatabaseState
  instances: Instance[]
  conflicts?: FieldConflict[]
  spec_errors?: string[]
  /** Only when asked for (`includeUpgrades`) and there are some. */
  available_upgrades?: AvailableUpgrade[]
}

/** A newer image of the database's Postgres major in the version manifest. */
export interface AvailableUpgrade { postgres_version: string, spock_version?: string, image: string }

export interface Database extends DatabaseSummary {
  spec?: DatabaseSpec
}

export interface CreateDatabaseBody { id?: string, tenant_id?: string, spec: unknown }
export interface UpdateDatabaseBody { tenant_id?: string, spec: unknown }

export interface DatabaseChange { version: string, time: string, host_id: string, operation: string }
export interface DiffEntry { path: string, action: 'set' | 'removed', before?: unknown, after?: unknown }
export interface DatabaseHistory { changes: DatabaseChange[], diff?: DiffEntry[] }

/** Where a task lives: its scope and entity pick the path its log and cancel are under. */
export interface TaskRef { scope: TaskScope, entityId: string, taskId: string }

export interface TaskListQuery { afterTaskId?: string, limit?: number, sortOrder?: 'asc' | 'desc' }

export interface RemoveHostResponse { task: ApiTask, update_database_tasks: ApiTask[] }

export interface SwitchoverBody { candidate_instance_id?: string, scheduled_at?: string }
export interface FailoverBody { candidate_instance_id?: string, skip_validation?: boolean }
export interface BackupBody { type: 'full' | 'diff' | 'incr', annotations?: Record<string, string>, backup_options?: Record<string, string> }
/** The anchor's RestoreConfigSpec (repository fields as a backup repository's, without retention). */
export interface RestoreConfig {
  source_database_id: string
  source_node_name: string
  source_database_name: string
  repository: Record<string, unknown> & { type: string }
  restore_options?: Record<string, string>
}
export interface RestoreBody { restore_config: RestoreConfig, target_nodes?: string[] }
export interface RestoreResponse { task: ApiTask, node_tasks: ApiTask[], database: Database }

export function taskRef (task: Pick<ApiTask, 'scope' | 'entity_id' | 'task_id'>): TaskRef {
  return { scope: task.scope, entityId: task.entity_id, taskId: task.task_id }
}

const TERMINAL: ReadonlySet<string> = new Set(['completed', 'failed', 'canceled'])

/** completed, failed and canceled: a task in one never moves again. */
export function isFinished (status: string): boolean {
  return TERMINAL.has(status)
}
