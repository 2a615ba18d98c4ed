import { rfc3339 } from '../time.js'

export type TaskType = 'create' | 'update' | 'delete' | 'node_backup' | 'restore' | 'node_restore' | 'restart_instance' | 'stop_instance'
  | 'start_instance' | 'switchover' | 'failover' | 'remove_host' | 'upgrade'
export type TaskStatus = 'pending' | 'running' | 'completed' | 'failed' | 'canceling' | 'canceled' | 'unknown'
export type TaskScope = 'database' | 'host'

/** A task as the anchor shapes it; `remove_hosts`, `force` and `origin_host` are pgmesh's own and never returned. */
export interface Task {
  scope: TaskScope
  entity_id: string
  task_id: string
  created_at: string
  type: TaskType
  status: TaskStatus
  parent_id?: string
  database_id?: string
  node_name?: string
  instance_id?: string
  host_id?: string
  completed_at?: string
  error?: string
  /** Hosts an update treats as gone: their instances are not waited for. */
  remove_hosts?: string[]
  /** A delete with `force`: it does not wait for unreachable hosts. */
  force?: boolean
  /** The host that accepted the request. */
  origin_host?: string
}

/** One line of a task's log as the API answers it; `fields.host_id` names the host that wrote it. */
export interface TaskLogEntry { timestamp: string, message: string, fields?: Record<string, unknown> }

/** A task's log as the API answers it: entries oldest first, and the newest entry's id to poll after. */
export interface TaskLog {
  scope: TaskScope
  entity_id: string
  database_id?: string
  task_id: string
  task_status: TaskStatus
  last_entry_id?: string
  entries: TaskLogEntry[]
}

/** Work not yet finished: a task in one of these can still be superseded, canceled or settled. */
export const ACTIVE_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set(['pending', 'running'])

const TERMINAL: ReadonlySet<TaskStatus> = new Set(['completed', 'failed', 'canceled'])

/** Where each status may go; a terminal status goes nowhere, so a late or repeated settle changes nothing. */
const NEXT: Readonly<Record<TaskStatus, ReadonlySet<TaskStatus>>> = {
  pending: new Set(['running', 'completed', 'failed', 'canceling', 'canceled']),
  running: new Set(['completed', 'failed', 'canceling', 'canceled']),
  canceling: new Set(['canceled', 'completed', 'failed']),
  unknown: new Set(['running', 'completed', 'failed', 'canceled']),
  completed: new Set(),
  failed: new Set(),
  canceled: new Set()
}

export function isTerminalTaskStatus (status: TaskStatus): boolean {
  return TERMINAL.has(status)
}

/**
 * The one way a task's status changes: moves `task` (a plain object or a document proxy, changed in place) to `to`
 * when the state machine allows it, stamping `completed_at` on a terminal status and recording `error`. Returns
 * whether it moved; a transition the machine refuses (say, a second settle of a finished task) is a no-op, which
 * keeps every caller idempotent.
 */
export function transitionTask (task: Task, to: TaskStatus, outcome: { error?: string, at?: string } = {}): boolean {
  if (!NEXT[task.status].has(to)) return false
  task.status = to
  if (TERMINAL.has(to)) task.completed_at = outcome.at ?? rfc3339()
  if (outcome.error !== undefined) task.error = outcome.error
  return true
}
