import {
  ACTIVE_TASK_STATUSES, InvalidInputError, isTerminalTaskStatus, NotFoundError, newTaskId, rfc3339, type Task, type TaskLog, type TaskScope, type TaskStatus, type TaskType, transitionTask
} from '@pgmesh/model'
import { type ClusterState, toPlain } from '@pgmesh/state'
import type { TaskArchive } from './task-archive.js'
import type { TaskLogEntry, TaskLogStore } from './task-log.js'

export interface TaskListQuery {
  scope?: TaskScope
  entityId?: string
  afterTaskId?: string
  limit?: number
  sortOrder?: 'asc' | 'desc'
}

export type { TaskLog }

/** Tasks that set a database's spec; only they can be superseded by another. */
const SPEC_TASKS: ReadonlySet<TaskType> = new Set(['create', 'update', 'upgrade', 'restore', 'delete'])

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
    private readonly remoteLogs: (taskId: string) => Promise<TaskLogEntry[]>,
    /** Finished tasks a document compaction moved out of the document; read with it. */
    private readonly archive?: TaskArchive
  ) {}

  newTask (init: Omit<Task, 'task_id' | 'created_at' | 'status'>): Task {
    return { ...init, task_id: newTaskId(), created_at: rfc3339(), status: 'pending', origin_host: this.hostId }
  }

  /**
   * After a merge, a database can carry a different task than one this host started while apart (two creates of one
   * id, concurrent updates): this host closes its own such tasks as superseded. Level-triggered and idempotent.
   */
  async settleSuperseded (): Promise<void> {
    const doc = this.state.doc
    const stale: Array<{ taskId: string, by: string }> = []
    for (const task of Object.values(doc.tasks ?? {})) {
      if (task.scope !== 'database' || task.origin_host !== this.hostId || !ACTIVE_TASK_STATUSES.has(task.status) || !SPEC_TASKS.has(task.type)) continue
      const current = doc.databases?.[task.entity_id]?.task_id
      if (current !== undefined && current !== task.task_id) stale.push({ taskId: task.task_id, by: current })
    }
    if (stale.length === 0) return
    await this.state.change({ op: 'task.supersede' }, d => {
      for (const { taskId, by } of stale) {
        const task = d.tasks[taskId]
        if (task !== undefined) transitionTask(task, 'canceled', { error: `superseded by concurrent task ${by}` })
      }
    })
  }

  get (taskId: string): Task | undefined {
    const t = this.state.doc.tasks?.[taskId]
    return t === undefined ? this.archive?.get(taskId) : toPlain<Task>(t)
  }

  list (query: TaskListQuery): Task[] {
    const desc = query.sortOrder !== 'asc'
    const inDocument = this.state.doc.tasks ?? {}
    const archived = this.archive === undefined ? [] : [...this.archive.all()].filter(t => inDocument[t.task_id] === undefined)
    let tasks = [...Object.values(inDocument).map(t => toPlain<Task>(t)), ...archived]
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
    if (!ACTIVE_TASK_STATUSES.has(task.status)) throw new InvalidInputError('task must be running or pending to be cancelled')
    await this.state.change({ op: 'task.cancel', entity: databaseId }, d => {
      const stored = d.tasks[taskId]
      if (stored !== undefined) transitionTask(stored, 'canceling')
    })
    await this.logs.append(taskId, 'task is canceling', { status: 'canceling' })
    return { ...task, status: 'canceling' }
  }

  /**
   * Closes the parent tasks this host accepted (a remove_host) whose child tasks (its databases' updates and
   * deletes) have all finished: completed when they all completed, else failed with the first child's error.
   */
  async settleParents (): Promise<void> {
    const tasks = Object.values(this.state.doc.tasks ?? {})
    const open = tasks.filter(t => t.type === 'remove_host' && t.origin_host === this.hostId && ACTIVE_TASK_STATUSES.has(t.status))
    for (const parent of open) {
      const children = tasks.filter(t => t.parent_id === parent.task_id)
      if (children.some(c => !isTerminalTaskStatus(c.status))) continue
      const failed = children.find(c => c.status !== 'completed')
      await this.settle(parent.task_id, failed === undefined
        ? { status: 'completed' }
        : { status: 'failed', error: `database ${failed.entity_id}: ${failed.error ?? failed.status}` })
    }
  }

  /** Moves a task this host accepted to what its work came to; a task already past that status is left alone. */
  async settle (taskId: string, result: { status: 'running' | 'completed' | 'failed', error?: string }): Promise<void> {
    let moved = false
    await this.state.change({ op: `task.${result.status}` }, d => {
      const task = d.tasks[taskId]
      if (task !== undefined) moved = transitionTask(task, result.status, result.error === undefined ? {} : { error: result.error })
    })
    if (moved && result.status !== 'running') await this.log(taskId, result.status === 'completed' ? 'task completed' : `task failed: ${result.error ?? ''}`)
  }
}
