import {
  ACTIVE_TASK_STATUSES, type BackupRequest, type BackupRun, type DatabaseRecord, DatabaseNotModifiableError, InvalidInputError, nodePrimary,
  NotFoundError, type ObservedInstance, pgbackrestOptionProblem, pgbackrestValueProblem, type Task, transitionTask
} from '@pgmesh/model'
import { type ClusterState, materializeMap, toPlain } from '@pgmesh/state'
import { decodeSpec } from './spec-encoding.js'
import type { Tasks } from './tasks.js'

export interface BackupsContext {
  state: ClusterState
  tasks: Tasks
  observedInstances: () => readonly ObservedInstance[]
}

export interface BackupBody { type: BackupRun['type'], annotations?: Record<string, string>, backup_options?: Record<string, string> }

/** States of a node's primary in which a backup can start (the anchor's: the primary must be running). */
const BACKUP_READY = new Set(['available', 'degraded'])

/**
 * Node backups in the cluster document: the anchor's on-demand `POST …/nodes/{node}/backups` checked and recorded as
 * a request with its node_backup task; schedules' ticks; and the host of the node's primary marking a request started
 * and finished (the reconciler's backup runner does the work).
 */
export class Backups {
  constructor (private readonly ctx: BackupsContext) {}

  private record (databaseId: string): DatabaseRecord {
    const record = this.ctx.state.readMerged<DatabaseRecord>(['databases', databaseId])?.value
    if (record === undefined) throw new NotFoundError('database not found')
    if (record.deleted) throw new DatabaseNotModifiableError()
    return record
  }

  /** Checks the anchor's preconditions (node, backup config, primary state, options) and records the request. */
  async request (databaseId: string, nodeName: string, body: BackupBody): Promise<Task> {
    const record = this.record(databaseId)
    const spec = decodeSpec(record.spec) as { nodes?: Array<{ name?: unknown, host_ids?: unknown, backup_config?: unknown }>, backup_config?: unknown }
    const node = (Array.isArray(spec.nodes) ? spec.nodes : []).find(n => n?.name === nodeName)
    if (node === undefined || !Array.isArray(node.host_ids)) throw new InvalidInputError(`node ${nodeName} not found`)
    if ((node.backup_config ?? spec.backup_config) === undefined) throw new InvalidInputError('backups are not configured for this database node')
    checkOptions(body)
    const primary = nodePrimary(databaseId, nodeName, node.host_ids as string[], record.primaries?.[nodeName])
    const observed = this.ctx.observedInstances().find(i => i.id === primary?.instanceId)
    const state = observed?.state ?? 'unknown'
    if (!BACKUP_READY.has(state) || observed?.role !== 'primary') throw new InvalidInputError(`node ${nodeName} is in an unsupported state (${state})`)
    const task = this.ctx.tasks.newTask({ scope: 'database', entity_id: databaseId, database_id: databaseId, node_name: nodeName, type: 'node_backup', ...(primary === undefined ? {} : { instance_id: primary.instanceId }) })
    await this.ctx.state.change({ op: 'node.backup', entity: databaseId }, d => {
      d.tasks[task.task_id] = task
      materializeMap(d, d.databases[databaseId] as DatabaseRecord, 'backup_requests')[task.task_id] = request(task.task_id, nodeName, body)
    })
    await this.ctx.tasks.log(task.task_id, 'task created', { node_name: nodeName, type: body.type })
    return task
  }

  /**
   * A schedule's tick: records it as taken, and unless `type` is undefined (a schedule seen for the first time, whose
   * past ticks are not run) asks for the backup. Returns the task, if one was made.
   */
  async tick (databaseId: string, nodeName: string, scheduleId: string, tickAt: string, type: 'full' | 'incr' | undefined): Promise<Task | undefined> {
    const task = type === undefined ? undefined : this.ctx.tasks.newTask({ scope: 'database', entity_id: databaseId, database_id: databaseId, node_name: nodeName, type: 'node_backup' })
    await this.ctx.state.change({ op: 'node.backup-tick', entity: databaseId }, d => {
      const target = d.databases[databaseId] as DatabaseRecord | undefined
      if (target === undefined) return
      materializeMap(d, target, 'backup_ticks')[`${nodeName}/${scheduleId}`] = tickAt
      if (task === undefined || type === undefined) return
      d.tasks[task.task_id] = task
      materializeMap(d, target, 'backup_requests')[task.task_id] = { ...request(task.task_id, nodeName, { type }), schedule_id: scheduleId }
    })
    if (task !== undefined) await this.ctx.tasks.log(task.task_id, `scheduled backup ${scheduleId} (tick ${tickAt})`, { node_name: nodeName, type })
    return task
  }

  /** Requests of a database not finished yet. */
  requests (databaseId: string): BackupRequest[] {
    const requests = this.ctx.state.doc.databases?.[databaseId]?.backup_requests
    return requests === undefined ? [] : Object.values(toPlain<Record<string, BackupRequest>>(requests))
  }

  /** The host of the node's primary starts a request: its task runs there, on that instance. False: canceled first. */
  async started (databaseId: string, taskId: string, hostId: string, instance: string): Promise<boolean> {
    let moved = false
    await this.ctx.state.change({ op: 'node.backup-start', entity: databaseId }, d => {
      const task = d.tasks[taskId]
      if (task === undefined || !transitionTask(task, 'running')) return
      moved = true
      task.instance_id = instance
      task.host_id = hostId
      const requests = d.databases[databaseId]?.backup_requests
      const stored = requests?.[taskId]
      if (stored !== undefined) stored.host_id = hostId
    })
    if (moved) await this.ctx.tasks.log(taskId, `backing up instance ${instance}`, { instance_id: instance })
    return moved
  }

  /** How it ended (`canceled`: the user canceled it, the backup was stopped or never started); the request goes. */
  async finished (databaseId: string, taskId: string, error: string | undefined, canceled = false): Promise<void> {
    let moved = false
    await this.ctx.state.change({ op: 'node.backup-end', entity: databaseId }, d => {
      const task = d.tasks[taskId]
      if (task !== undefined) moved = transitionTask(task, canceled ? 'canceled' : error === undefined ? 'completed' : 'failed', error === undefined ? {} : { error })
      const requests = d.databases[databaseId]?.backup_requests
      if (requests?.[taskId] !== undefined) delete requests[taskId]
    })
    if (moved) await this.ctx.tasks.log(taskId, canceled ? 'task successfully canceled' : error === undefined ? 'task completed' : `task failed: ${error}`)
  }

  /** Instances with a backup running (their reads say `backing_up`). */
  runningOn (databaseId: string): Set<string> {
    const out = new Set<string>()
    for (const r of this.requests(databaseId)) {
      const task = this.ctx.tasks.get(r.task_id)
      if (task?.status === 'running' && task.instance_id !== undefined && ACTIVE_TASK_STATUSES.has(task.status)) out.add(task.instance_id)
    }
    return out
  }
}

function request (taskId: string, nodeName: string, body: BackupBody): BackupRequest {
  return {
    task_id: taskId, node_name: nodeName, type: body.type,
    ...(body.annotations === undefined ? {} : { annotations: body.annotations }),
    ...(body.backup_options === undefined ? {} : { backup_options: body.backup_options })
  }
}

/** The anchor refuses bad option names; pgmesh also refuses what would run commands or name files (backup-policy). */
function checkOptions (body: BackupBody): void {
  for (const [name, value] of Object.entries(body.backup_options ?? {})) {
    const problem = pgbackrestOptionProblem(name) ?? pgbackrestValueProblem(value)
    if (problem !== undefined) throw new InvalidInputError(`backup_options[${name}]: ${problem}`)
  }
  for (const [key, value] of Object.entries(body.annotations ?? {})) {
    const problem = key.includes('=') || key === '' ? 'invalid annotation key' : pgbackrestValueProblem(key) ?? pgbackrestValueProblem(value)
    if (problem !== undefined) throw new InvalidInputError(`annotations[${key}]: ${problem}`)
  }
}

