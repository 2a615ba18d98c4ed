import {
  ACTIVE_TASK_STATUSES, type DatabaseRecord, DatabaseNotModifiableError, type InstanceOperation, InvalidInputError, nodePrimary, type NodePrimary, NotFoundError,
  type ObservedInstance, OperationAlreadyInProgressError, type PrimaryChangeRequest, type Task, instanceId, rfc3339, transitionTask
} from '@pgmesh/model'
import { type ClusterState, materializeMap } from '@pgmesh/state'
import { decodeSpec } from './spec-encoding.js'
import type { Tasks } from './tasks.js'

/** A primary change whose task is in one of these blocks another. */
const UNFINISHED = new Set(['pending', 'running', 'canceling'])

export interface OperationsContext {
  state: ClusterState
  tasks: Tasks
  observedInstances: () => readonly ObservedInstance[]
  /** Hosts whose heartbeats are current (this one included). */
  reachableHosts: () => ReadonlySet<string>
}

interface NodeRef { record: DatabaseRecord, nodeName: string, hostIds: string[] }

/**
 * The anchor's instance and node operations (restart, stop, start, switchover, failover): each checks the anchor's
 * preconditions against what the hosts report, then records the request in the document; the reconcilers carry it
 * out and the accepting host closes the task.
 */
export class Operations {
  constructor (private readonly ctx: OperationsContext) {}

  private record (databaseId: string): DatabaseRecord {
    // Merged as GET shows it: a node's primaries or requests may sit in maps two hosts created concurrently.
    const record = this.ctx.state.readMerged<DatabaseRecord>(['databases', databaseId])?.value
    if (record === undefined) throw new NotFoundError('database not found')
    if (record.deleted) {
      if (this.ctx.tasks.get(record.task_id)?.status === 'completed') throw new NotFoundError('database not found')
      throw new DatabaseNotModifiableError()
    }
    return record
  }

  private nodes (record: DatabaseRecord): Array<{ name: string, host_ids: string[] }> {
    const nodes = decodeSpec(record.spec).nodes
    return Array.isArray(nodes) ? nodes.filter((n): n is { name: string, host_ids: string[] } => typeof n?.name === 'string' && Array.isArray(n.host_ids)) : []
  }

  private instance (databaseId: string, id: string): { record: DatabaseRecord, nodeName: string, observed: ObservedInstance | undefined } {
    const record = this.record(databaseId)
    for (const node of this.nodes(record)) {
      for (const hostId of node.host_ids) {
        if (instanceId(databaseId, node.name, hostId) !== id) continue
        return { record, nodeName: node.name, observed: this.observed(databaseId, id) }
      }
    }
    throw new NotFoundError('instance not found')
  }

  private observed (databaseId: string, id: string): ObservedInstance | undefined {
    return this.ctx.observedInstances().find(i => i.database_id === databaseId && i.id === id)
  }

  private async newInstanceTask (databaseId: string, nodeName: string, id: string, type: Task['type'], change: (op: InstanceOperation) => void): Promise<Task> {
    const task = this.ctx.tasks.newTask({ scope: 'database', entity_id: databaseId, database_id: databaseId, node_name: nodeName, instance_id: id, type })
    await this.ctx.state.change({ op: `instance.${type}`, entity: databaseId }, d => {
      const target = d.databases[databaseId] as DatabaseRecord
      // Maps other hosts may have created concurrently become one before this write lands in them.
      const operations = materializeMap(d, target, 'instance_operations')
      if (operations[id] === undefined) {
        const op: InstanceOperation = { stopped: false, restarts: 0, task_id: task.task_id }
        change(op)
        operations[id] = op
      } else {
        const existing = materializeMap(d, operations, id)
        change(existing)
        // Only the newest operation's task is followed to its end: one still open is superseded.
        const previous = d.tasks[existing.task_id]
        if (previous !== undefined && ACTIVE_TASK_STATUSES.has(previous.status)) transitionTask(previous, 'canceled', { error: `superseded by task ${task.task_id}` })
        existing.task_id = task.task_id
      }
      d.tasks[task.task_id] = task
    })
    await this.ctx.tasks.log(task.task_id, 'task created', { instance_id: id })
    return task
  }

  async restart (databaseId: string, id: string, scheduledAt: string | undefined): Promise<Task> {
    const { nodeName, observed } = this.instance(databaseId, id)
    const state = observed?.state ?? 'unknown'
    if (state !== 'available') throw new InvalidInputError(`instance ${id} is not restartable, it is in ${state} state`)
    const at = scheduledAt === undefined ? undefined : futureTime(scheduledAt)
    return await this.newInstanceTask(databaseId, nodeName, id, 'restart_instance', (op) => {
      op.restarts += 1
      if (at === undefined) delete op.restart_at
      else op.restart_at = at
    })
  }

  async stop (databaseId: string, id: string): Promise<Task> {
    const { nodeName, observed } = this.instance(databaseId, id)
    const state = observed?.state ?? 'unknown'
    if (state !== 'available' && state !== 'degraded') throw new InvalidInputError(`instance ${id} cannot be stopped, it is in ${state} state`)
    return await this.newInstanceTask(databaseId, nodeName, id, 'stop_instance', (op) => { op.stopped = true })
  }

  async start (databaseId: string, id: string): Promise<Task> {
    const { nodeName, observed } = this.instance(databaseId, id)
    const state = observed?.state ?? 'unknown'
    if (state !== 'stopped' && state !== 'unknown') throw new InvalidInputError(`instance ${id} cannot be started, it is in ${state} state`)
    return await this.newInstanceTask(databaseId, nodeName, id, 'start_instance', (op) => { op.stopped = false })
  }

  private node (databaseId: string, nodeName: string): NodeRef {
    const record = this.record(databaseId)
    const node = this.nodes(record).find(n => n.name === nodeName)
    if (node === undefined) throw new NotFoundError('no primary instance found for the given node')
    return { record, nodeName, hostIds: node.host_ids }
  }

  /** The candidate given, checked; or the first available replica of the node. */
  private candidate (ref: NodeRef, primary: NodePrimary, given: string | undefined): string {
    const ids = ref.hostIds.map(h => instanceId(ref.record.id, ref.nodeName, h))
    if (given !== undefined) {
      if (!ids.includes(given)) throw new InvalidInputError(`candidate instance ${given} does not belong to node ${ref.nodeName}`)
      const state = this.observed(ref.record.id, given)?.state ?? 'unknown'
      if (state !== 'available') throw new InvalidInputError(`candidate instance ${given} is not available (state=${state})`)
      return given
    }
    const reachable = this.ctx.reachableHosts()
    const pick = ref.hostIds.filter(h => reachable.has(h)).map(h => instanceId(ref.record.id, ref.nodeName, h))
      .find(id => id !== primary.instanceId && this.observed(ref.record.id, id)?.state === 'available')
    if (pick === undefined) throw new InvalidInputError(`node ${ref.nodeName} has no available replica to promote`)
    return pick
  }

  private inProgress (ref: NodeRef): boolean {
    const request = ref.record.primary_changes?.[ref.nodeName]
    return request !== undefined && UNFINISHED.has(this.ctx.tasks.get(request.task_id)?.status ?? '')
  }

  async switchover (databaseId: string, nodeName: string, body: { candidate_instance_id?: string, scheduled_at?: string }): Promise<Task> {
    const ref = this.node(databaseId, nodeName)
    const primary = nodePrimary(databaseId, nodeName, ref.hostIds, ref.record.primaries?.[nodeName])
    if (primary === undefined) throw new NotFoundError('no primary instance found for the given node')
    const at = body.scheduled_at === undefined ? undefined : futureTime(body.scheduled_at)
    const candidate = this.candidate(ref, primary, body.candidate_instance_id)
    if (this.inProgress(ref)) throw new OperationAlreadyInProgressError(`switchover already in progress for node ${nodeName}`)
    return await this.primaryChange(ref, { type: 'switchover', candidate, from_term: primary.term, ...(at === undefined ? {} : { scheduled_at: at }) }, candidate === primary.instanceId ? 'candidate is already the primary' : undefined)
  }

  async failover (databaseId: string, nodeName: string, body: { candidate_instance_id?: string, skip_validation?: boolean }): Promise<Task> {
    const ref = this.node(databaseId, nodeName)
    const primary = nodePrimary(databaseId, nodeName, ref.hostIds, ref.record.primaries?.[nodeName])
    if (primary === undefined) throw new NotFoundError('no primary instance found for the given node')
    const candidate = this.candidate(ref, primary, body.candidate_instance_id)
    if (this.inProgress(ref)) throw new OperationAlreadyInProgressError(`failover already in progress for node ${nodeName}`)
    const observed = this.observed(databaseId, primary.instanceId)
    const primaryHost = ref.hostIds.find(h => instanceId(databaseId, nodeName, h) === primary.instanceId)
    const healthy = observed?.state === 'available' && observed.role === 'primary' && primaryHost !== undefined && this.ctx.reachableHosts().has(primaryHost)
    const refused = healthy && body.skip_validation !== true ? 'cluster is healthy; refuse failover unless skip_validation is true' : undefined
    return await this.primaryChange(ref, { type: 'failover', candidate, from_term: primary.term }, candidate === primary.instanceId ? 'candidate is already the primary' : undefined, refused)
  }

  private async primaryChange (ref: NodeRef, request: Omit<PrimaryChangeRequest, 'task_id'>, noop: string | undefined, refused?: string): Promise<Task> {
    const base = this.ctx.tasks.newTask({ scope: 'database', entity_id: ref.record.id, database_id: ref.record.id, node_name: ref.nodeName, instance_id: request.candidate, type: request.type })
    const at = rfc3339()
    const task: Task = refused !== undefined
      ? { ...base, status: 'failed', completed_at: at, error: refused }
      : noop !== undefined ? { ...base, status: 'completed', completed_at: at } : base
    await this.ctx.state.change({ op: `node.${request.type}`, entity: ref.record.id }, d => {
      d.tasks[task.task_id] = task
      if (task.status !== 'pending') return
      const target = d.databases[ref.record.id] as DatabaseRecord
      materializeMap(d, target, 'primary_changes')[ref.nodeName] = { ...request, task_id: task.task_id }
    })
    await this.ctx.tasks.log(task.task_id, refused ?? noop ?? 'task created', { node_name: ref.nodeName, candidate_instance_id: request.candidate })
    return task
  }

  /** A lease at `term` was granted to `instance`: it is the node's primary from now on. */
  async recordPrimary (databaseId: string, nodeName: string, term: number, instance: string): Promise<void> {
    await this.ctx.state.change({ op: 'node.primary', entity: databaseId }, d => {
      const target = d.databases[databaseId]
      if (target === undefined) return
      // Two hosts recording the first terms of different nodes at once both create `primaries`: merge, never lose one.
      const primaries = materializeMap(d, target, 'primaries')
      materializeMap(d, primaries, nodeName)[String(term)] = instance
    })
  }
}

/** An RFC 3339 time that must lie in the future. */
function futureTime (value: string): string {
  const t = Date.parse(value)
  if (Number.isNaN(t)) throw new InvalidInputError('scheduled_at must be an RFC 3339 date-time')
  if (t <= Date.now()) throw new InvalidInputError('scheduled_at must be in the future')
  return new Date(t).toISOString()
}
