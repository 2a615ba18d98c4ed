import { InvalidInputError, NotFoundError, newTaskId } from '@pgmesh/model'
import { type ClusterState, toPlain } from '@pgmesh/state'
import type { TaskLogEntry, TaskLogStore } from './task-log.js'

export type TaskType = 'create' | 'update' | 'delete' | 'node_backup' | 'restore' | 'node_restore' | 'restart_instance' | 'stop_instance'
  | 'start_instance' | 'switchover' | 'failover' | 'remove_host' | 'upgrade'
export type TaskStatus = 'pending' | 'running' | 'completed' | 'failed' | 'canceling' | 'canceled' | 'unknown'
export type TaskScope = 'database' | 'host'

/** A task as the anchor shapes it; `remove_hosts` and `origin_host` are pgmesh's own and never returned. */
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
  remove_hosts?: string[]
  /** The host that accepted the request. */
  origin_host?: string
}

export interface TaskListQuery {
  scope?: TaskScope
  entityId?: string
  afterTaskId?: string
  limit?: number
  sortOrder?: 'asc' | 'desc'
}

export interface TaskLog {
  scope: TaskScope
  entity_id: string
  database_id?: string
  task_id: string
  task_status: TaskStatus
  last_entry_id?: string
  entries: Array<{ timestamp: string, message: string, fields?: Record<string, unknown> }>
}

const ACTIVE: ReadonlySet<TaskStatus> = new Set(['pending', 'running'])
/** Tasks that set a database's spec; only they can be superseded by another. */
const SPEC_TASKS: ReadonlySet<TaskType> = new Set(['create', 'update', 'delete'])

/**
 * Task records live in the cluster document (a handful of writes each); their log lines live on the hosts that did
 * the work and are gathered from all of them when read.
 */
export class Tasks {
  constructor (
    private readonly hostId: string,
    private readonly state: ClusterState,
    private readonly logs: TaskLogStore,
    /** Log entries of a task held by the other reachable hosts. */
    private readonly remoteLogs: (taskId: string) => Promise<TaskLogEntry[]>
  ) {}

  newTask (init: Omit<Task, 'task_id' | 'created_at' | 'status'>): Task {
    return { ...init, task_id: newTaskId(), created_at: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), status: 'pending', origin_host: this.hostId }
  }

  /**
   * After a merge, a database can carry a different task than one this host started while apart (two creates of one
   * id, concurrent updates): this host closes its own such tasks as superseded. Level-triggered and idempotent.
   */
  async settleSuperseded (): Promise<void> {
    const doc = this.state.doc
    const stale: Array<{ taskId: string, by: string }> = []
    for (const raw of Object.values(doc.tasks ?? {})) {
      const task = raw as Task
      if (task.scope !== 'database' || task.origin_host !== this.hostId || !ACTIVE.has(task.status) || !SPEC_TASKS.has(task.type)) continue
      const current = (doc.databases?.[task.entity_id] as { task_id?: string } | undefined)?.task_id
      if (current !== undefined && current !== task.task_id) stale.push({ taskId: task.task_id, by: current })
    }
    if (stale.length === 0) return
    const at = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
    await this.state.change({ op: 'task.supersede' }, d => {
      for (const { taskId, by } of stale) {
        Object.assign(d.tasks[taskId] as object, { status: 'canceled', completed_at: at, error: `superseded by concurrent task ${by}` })
      }
    })
  }

  get (taskId: string): Task | undefined {
    const t = this.state.doc.tasks?.[taskId]
    return t === undefined ? undefined : toPlain<Task>(t)
  }

  list (query: TaskListQuery): Task[] {
    const desc = query.sortOrder !== 'asc'
    let tasks = Object.values(this.state.doc.tasks ?? {}).map(t => toPlain<Task>(t))
      .filter(t => (query.scope === undefined || t.scope === query.scope) && (query.entityId === undefined || t.entity_id === query.entityId))
    // UUIDv7 ids sort by creation time.
    tasks.sort((a, b) => desc ? b.task_id.localeCompare(a.task_id) : a.task_id.localeCompare(b.task_id))
    if (query.afterTaskId !== undefined) {
      const after = query.afterTaskId
      tasks = tasks.filter(t => desc ? t.task_id < after : t.task_id > after)
    }
    if (query.limit !== undefined) tasks = tasks.slice(0, query.limit)
    return tasks
  }

  async log (taskId: string, message: string, fields?: Record<string, unknown>): Promise<void> {
    await this.logs.append(taskId, message, fields)
  }

  async readLog (task: Task, query: { afterEntryId?: string, limit?: number }): Promise<TaskLog> {
    const local = await this.logs.read(task.task_id)
    const remote = await this.remoteLogs(task.task_id)
    const byId = new Map<string, TaskLogEntry>()
    for (const e of [...local, ...remote]) byId.set(e.id, e)
    let entries = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id))
    const last = entries.at(-1)?.id
    if (query.afterEntryId !== undefined) {
      const after = query.afterEntryId
      entries = entries.filter(e => e.id > after)
    }
    // `limit` keeps the newest entries, as the anchor does.
    if (query.limit !== undefined) entries = entries.slice(Math.max(0, entries.length - query.limit))
    return {
      scope: task.scope,
      entity_id: task.entity_id,
      ...(task.scope === 'database' ? { database_id: task.entity_id } : {}),
      task_id: task.task_id,
      task_status: task.status,
      ...(last === undefined ? {} : { last_entry_id: last }),
      entries: entries.map(e => ({ timestamp: e.timestamp, message: e.message, fields: { ...e.fields, host_id: e.host_id } }))
    }
  }

  /** Marks a pending or running task canceling; the host doing the work stops at a safe point and says canceled. */
  async cancel (taskId: string, databaseId: string): Promise<Task> {
    const task = this.get(taskId)
    if (task === undefined || task.database_id !== databaseId) throw new NotFoundError('no task found with the given ID')
    if (!ACTIVE.has(task.status)) throw new InvalidInputError('task must be running or pending to be cancelled')
    await this.state.change({ op: 'task.cancel', entity: databaseId }, d => {
      Object.assign(d.tasks[taskId] as object, { status: 'canceling' })
    })
    await this.logs.append(taskId, 'task is canceling', { status: 'canceling' })
    return { ...task, status: 'canceling' }
  }
}
