import {
  ACTIVE_TASK_STATUSES, type DatabaseRecord, type DatabaseSpec, DatabaseNotModifiableError, type InstanceRestore, type Issue, invalidInput, type NodeRestore,
  NotFoundError, type RestoreConfigSpec, restoreConfigIssues, type Task, transitionTask
} from '@pgmesh/model'
import { type ClusterState, materializeMap, toPlain } from '@pgmesh/state'
import type { DataKey } from './data-key.js'
import type { Databases, DatabaseView } from './databases.js'
import { decodeSpec } from './spec-encoding.js'
import { unmountedRepositoryIssue } from './swarm-repositories.js'
import { openSecrets, sealSecrets } from './spec-secrets.js'
import type { Tasks } from './tasks.js'

export interface RestoresContext {
  state: ClusterState
  tasks: Tasks
  databases: Pick<Databases, 'update'>
  dataKey: () => DataKey | undefined
}

export interface RestoreBody { restore_config: RestoreConfigSpec, target_nodes?: string[] }

/** A node restore as the host that runs it needs it: its request, and the restore with its secrets opened. */
/** `databaseName` is the restored database's own (its spec's), filled in by whoever runs it. */
export interface PendingRestore { request: NodeRestore, restore: Omit<InstanceRestore, 'databaseName'> }

/** States in which the database runs a task of its own; `force` restores all the same (the anchor's query flag). */
const IN_PROGRESS = new Set(['creating', 'modifying', 'deleting', 'restoring'])

/**
 * In-place restores (`POST /v1/databases/{id}/restore`) in the cluster document: the request checked and recorded
 * with its `restore` task (the database's current task, state `restoring`) and one `node_restore` task per target
 * node, in one change that also drops the target nodes' backup_config (as the anchor does: a restored node's WAL
 * must not go on into the repository it came from); then the host of each node's primary marks its node's restore
 * started and finished (the reconciler's restore runner does the work).
 */
export class Restores {
  constructor (private readonly ctx: RestoresContext) {}

  async request (databaseId: string, body: RestoreBody, options: { force?: boolean } = {}): Promise<{ task: Task, node_tasks: Task[], database: DatabaseView }> {
    const record = this.ctx.state.readMerged<DatabaseRecord>(['databases', databaseId])?.value
    if (record === undefined || (record.deleted && this.ctx.tasks.get(record.task_id)?.status === 'completed')) throw new NotFoundError('database not found')
    if (record.deleted) throw new DatabaseNotModifiableError()
    const current = this.ctx.tasks.get(record.task_id)
    if (options.force !== true && IN_PROGRESS.has(record.state) && current !== undefined && ACTIVE_TASK_STATUSES.has(current.status)) throw new DatabaseNotModifiableError()
    const opened = openSecrets(decodeSpec(record.spec), this.ctx.dataKey()).spec as unknown as DatabaseSpec
    const nodes = opened.nodes.map(n => n.name)
    const issues: Issue[] = [...restoreConfigIssues(body.restore_config, ['restore_config'])]
    const targets = body.target_nodes ?? nodes
    targets.forEach((name, i) => {
      if (!nodes.includes(name)) issues.push({ path: `target_nodes[${i}]`, message: `node ${name} not found` })
      else if (targets.indexOf(name) !== i) issues.push({ path: `target_nodes[${i}]`, message: 'target nodes must be unique' })
    })
    if (targets.length === 0) issues.push({ path: 'target_nodes', message: 'at least one node' })
    // Before anything is detached or stopped: on Swarm, pgBackRest inside the containers must find the repository.
    const hosts = this.ctx.state.doc.hosts ?? {}
    for (const name of new Set(targets)) {
      const node = opened.nodes.find(n => n.name === name)
      const issue = node === undefined ? undefined : unmountedRepositoryIssue(hosts, opened, node, body.restore_config.repository, 'restore_config.repository.base_path')
      if (issue !== undefined) issues.push(issue)
    }
    if (issues.length > 0) throw invalidInput(issues)
    const spec = withoutBackups(opened, new Set(targets))
    const sealed = sealSecrets({ restore_config: body.restore_config }, this.ctx.dataKey()).restore_config as Record<string, unknown>
    const nodeTasks: Task[] = []
    const { task, database } = await this.ctx.databases.update(databaseId, { spec }, {
      taskType: 'restore',
      state: 'restoring',
      alsoWrite: (d, parent) => {
        const target = d.databases[databaseId] as DatabaseRecord
        const requests = materializeMap(d, target, 'node_restores')
        for (const node of targets) {
          const nodeTask = this.ctx.tasks.newTask({ scope: 'database', entity_id: databaseId, database_id: databaseId, type: 'node_restore', node_name: node, parent_id: parent.task_id })
          nodeTasks.push(nodeTask)
          d.tasks[nodeTask.task_id] = nodeTask
          // A restore asked again for a node replaces the one before (its task ends as superseded).
          const before = requests[node]
          const superseded = before === undefined ? undefined : d.tasks[before.task_id]
          if (superseded !== undefined) transitionTask(superseded, 'canceled', { error: `superseded by task ${nodeTask.task_id}` })
          requests[node] = { task_id: nodeTask.task_id, parent_id: parent.task_id, node_name: node, restore_config: structuredClone(sealed) }
        }
      }
    })
    for (const t of nodeTasks) await this.ctx.tasks.log(t.task_id, 'task created', { node_name: t.node_name, parent_id: task.task_id })
    return { task, node_tasks: nodeTasks, database: { ...database, state: 'restoring' } }
  }

  /** The database's node restores not finished yet, their restore_config opened (secrets included: never log it). */
  pending (databaseId: string): PendingRestore[] {
    const stored = this.ctx.state.doc.databases?.[databaseId]?.node_restores
    if (stored === undefined) return []
    return Object.values(toPlain<Record<string, NodeRestore>>(stored)).map(request => {
      const config = openSecrets({ restore_config: request.restore_config }, this.ctx.dataKey()).spec.restore_config as RestoreConfigSpec
      return {
        request,
        restore: {
          sourceDatabaseId: config.source_database_id, sourceNodeName: config.source_node_name, sourceDatabaseName: config.source_database_name,
          repository: config.repository, options: { ...config.restore_options }
        }
      }
    })
  }

  /** The host of the node's primary starts it: its task runs there. False: the task is no longer pending or running. */
  async started (databaseId: string, taskId: string, hostId: string, instanceId: string): Promise<boolean> {
    let ok = false
    await this.ctx.state.change({ op: 'node.restore-start', entity: databaseId }, d => {
      const task = d.tasks[taskId]
      if (task === undefined) return
      // Running already (this host restarted meanwhile): it runs again, from the start.
      ok = task.status === 'running' || transitionTask(task, 'running')
      if (!ok) return
      task.instance_id = instanceId
      task.host_id = hostId
      const request = Object.values(d.databases[databaseId]?.node_restores ?? {}).find(r => r.task_id === taskId)
      if (request !== undefined) request.host_id = hostId
    })
    return ok
  }

  /**
   * A node restore stopped by a cancel (of its own task or of the database's restore task): its task canceled, the
   * parent canceled when it was the one canceled and failed otherwise, the database `failed`. The request stays,
   * its task ended: the node remains out of replication, its primary stopped, until a new restore replaces it (a
   * half-restored data directory must not be started nor subscribed to).
   */
  async canceled (databaseId: string, taskId: string): Promise<void> {
    // The logs' last lines go first: whoever sees the task ended then reads its whole log (the status used to move
    // first, and a reader could miss why).
    const task = this.ctx.state.doc.tasks?.[taskId]
    if (task === undefined || !transitionTask({ ...task }, 'canceled')) return
    const parent = task.parent_id === undefined ? undefined : this.ctx.state.doc.tasks?.[task.parent_id]
    await this.ctx.tasks.log(taskId, `task successfully ${CANCELED_RESTORE}`)
    if (parent !== undefined && transitionTask({ ...parent }, parentOutcome(parent))) {
      await this.ctx.tasks.log(parent.task_id, `node restore ${taskId} ${CANCELED_RESTORE}`)
    }
    await this.ctx.state.change({ op: 'node.restore-cancel', entity: databaseId }, d => {
      const task = d.tasks[taskId]
      if (task === undefined || !transitionTask(task, 'canceled', { error: CANCELED_RESTORE })) return
      const record = d.databases[databaseId]
      const parent = task.parent_id === undefined ? undefined : d.tasks[task.parent_id]
      if (parent === undefined || record === undefined) return
      transitionTask(parent, parentOutcome(parent), { error: `node ${task.node_name ?? ''}: ${CANCELED_RESTORE}` })
      if (record.task_id === parent.task_id) record.state = 'failed'
    })
  }

  /**
   * How it ended; the request goes (the node takes part in replication again). A failed node restore fails the
   * database's restore task too.
   */
  async finished (databaseId: string, taskId: string, error: string | undefined): Promise<void> {
    let parentFailed: string | undefined
    await this.ctx.state.change({ op: 'node.restore-end', entity: databaseId }, d => {
      const task = d.tasks[taskId]
      if (task !== undefined) transitionTask(task, error === undefined ? 'completed' : 'failed', error === undefined ? {} : { error })
      const record = d.databases[databaseId]
      const requests = record?.node_restores
      const node = Object.values(requests ?? {}).find(r => r.task_id === taskId)
      if (requests !== undefined && node !== undefined) delete requests[node.node_name]
      const parent = task?.parent_id === undefined ? undefined : d.tasks[task.parent_id]
      if (error === undefined || parent === undefined || record === undefined) return
      if (transitionTask(parent, 'failed', { error: `node ${task?.node_name ?? ''}: ${error}` })) parentFailed = parent.task_id
      if (record.task_id === parent.task_id) record.state = 'failed'
    })
    await this.ctx.tasks.log(taskId, error === undefined ? 'task completed' : `task failed: ${error}`)
    if (parentFailed !== undefined) await this.ctx.tasks.log(parentFailed, `task failed: node restore ${taskId} failed: ${error ?? ''}`)
  }
}

/** Why a canceled node restore leaves its node out of service (in its task log and the parent's error). */
/** A canceled node restore ends its parent restore task canceled when the parent was the one canceled, else failed. */
function parentOutcome (parent: Task): 'canceled' | 'failed' {
  return parent.status === 'canceling' ? 'canceled' : 'failed'
}

export const CANCELED_RESTORE = 'canceled: the node\'s primary stays stopped with an incomplete data directory until the node is restored again'

/**
 * The spec with the target nodes' backup_config gone: a database-level one moves onto the nodes that are not
 * restored, so they keep backing up as before.
 */
export function withoutBackups (spec: DatabaseSpec, targets: ReadonlySet<string>): DatabaseSpec {
  const out = structuredClone(spec)
  const shared = out.backup_config
  delete out.backup_config
  for (const node of out.nodes) {
    if (targets.has(node.name)) delete node.backup_config
    else if (node.backup_config === undefined && shared !== undefined) node.backup_config = structuredClone(shared)
  }
  return out
}
