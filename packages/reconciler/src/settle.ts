import { nodePrimary, type ObservedInstance } from '@pgmesh/model'
import type { ReconcilerHost } from './deps.js'
import type { DesiredState } from './desired.js'
import { outcome } from './outcome.js'

export interface TaskSettlerDeps {
  host: Pick<ReconcilerHost, 'hostId' | 'tasks' | 'databases' | 'health'>
  taskLog: (taskId: string | undefined, message: string, fields?: Record<string, unknown>) => Promise<void>
  now?: () => number
}

/**
 * Closes the tasks this host started once every host reports their outcome (outcome.ts decides), and the instance and
 * node operations it accepted (stop, start, restart, switchover, failover).
 */
export class TaskSettler {
  constructor (private readonly deps: TaskSettlerDeps) {}

  async settle (desired: DesiredState): Promise<void> {
    const { host } = this.deps
    const reachable = host.health.reachableHosts()
    const cluster = host.health.clusterInstances()
    await this.settleOperations(desired, cluster)
    const members = new Set(desired.hosts.map(h => h.id))
    for (const db of desired.databases) {
      const taskId = desired.records.get(db.id)?.taskId
      if (taskId === undefined) continue
      const task = host.tasks.get(taskId)
      if (task === undefined || task.origin_host !== host.hostId) continue
      if (task.status === 'canceling') {
        await host.databases.settle(db.id, taskId, { status: 'canceled' })
        await this.deps.taskLog(taskId, 'task successfully canceled')
        continue
      }
      const clock = { now: (this.deps.now ?? Date.now)(), taskStartedAt: Date.parse(task.created_at) }
      // A host removed from the cluster since (say, while this delete waited for it) is gone too.
      const removed = (db.spec?.nodes ?? []).flatMap(n => n.host_ids).filter(h => !members.has(h))
      const goneHosts = [...new Set([...(task.remove_hosts ?? []), ...removed])]
      const scope = { ...(goneHosts.length === 0 ? {} : { goneHosts }), ...(task.force === true ? { force: true } : {}) }
      if (task.status === 'failed') {
        // The reconciler kept at it after the failure (a failed task does not pause it), and the hosts now report the
        // spec reached: the database is available again. The task keeps its failure.
        if (!db.deleted && outcome(db, cluster, reachable, clock, scope).status === 'completed' && await host.databases.recover(db.id, taskId)) {
          await this.deps.taskLog(taskId, 'every instance is available and replicating again: the database is available')
        }
        continue
      }
      if (task.status !== 'pending' && task.status !== 'running') continue
      const result = outcome(db, cluster, reachable, clock, scope)
      if (result.status === 'running') {
        if (task.status === 'pending') await host.databases.settle(db.id, taskId, { status: 'running' })
        continue
      }
      await host.databases.settle(db.id, taskId, result)
      await this.deps.taskLog(taskId, result.status === 'completed' ? 'task completed' : `task failed: ${result.error}`)
    }
    // A host removal this host accepted ends with its databases' tasks.
    await host.tasks.settleParents()
  }

  /** Closes the instance and node operations this host accepted, once the hosts report them done. */
  private async settleOperations (desired: DesiredState, cluster: ObservedInstance[]): Promise<void> {
    const { host } = this.deps
    const mine = (taskId: string): boolean => {
      const task = host.tasks.get(taskId)
      return task !== undefined && task.origin_host === host.hostId && (task.status === 'pending' || task.status === 'running')
    }
    for (const db of desired.databases) {
      for (const [id, op] of Object.entries(db.instanceOperations ?? {})) {
        if (!mine(op.task_id)) continue
        const task = host.tasks.get(op.task_id)
        const observed = cluster.find(i => i.id === id)
        const done = task?.type === 'stop_instance'
          ? observed?.state === 'stopped'
          : observed?.state === 'available' && (task?.type !== 'restart_instance' || (observed.restarts ?? 0) >= op.restarts)
        if (done) await host.tasks.settle(op.task_id, { status: 'completed' })
      }
      for (const [nodeName, request] of Object.entries(db.primaryChanges ?? {})) {
        if (!mine(request.task_id)) continue
        const node = db.spec?.nodes.find(n => n.name === nodeName)
        if (node === undefined) continue
        const primary = nodePrimary(db.id, nodeName, node.host_ids, db.primaries?.[nodeName])
        if (primary === undefined || primary.term <= request.from_term) continue
        if (primary.instanceId !== request.candidate) {
          await host.tasks.settle(request.task_id, { status: 'failed', error: `instance ${primary.instanceId} became the primary instead` })
          continue
        }
        const observed = cluster.find(i => i.id === primary.instanceId)
        if (observed?.role === 'primary' && observed.state === 'available') await host.tasks.settle(request.task_id, { status: 'completed' })
      }
    }
  }
}
