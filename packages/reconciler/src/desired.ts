import type { InstanceStatus } from '@pgmesh/orchestrator'
import type { ReconcilerHost } from './deps.js'
import type { Desired, DesiredDatabase, LocalInstance } from './types.js'

/** The planner's desired state, with each database's current task. */
export type DesiredState = Desired & { records: Map<string, { taskId: string }> }

/** Reads what the converged document asks for, as the planner needs it. */
export function readDesired (host: Pick<ReconcilerHost, 'hostId' | 'document' | 'databases' | 'tasks'>): DesiredState {
  const hosts = Object.values(host.document.doc.hosts ?? {}).map(h => ({ id: h.id, addresses: [...h.client_addresses] }))
  const records = new Map<string, { taskId: string }>()
  const databases: DesiredDatabase[] = host.databases.desired().map((d) => {
    records.set(d.id, { taskId: d.task_id })
    const status = host.tasks.get(d.task_id)?.status
    return {
      id: d.id, generation: d.generation, deleted: d.deleted, paused: status === 'canceling' || status === 'canceled', spec: d.spec, sources: d.sources,
      primaries: d.primaries, instanceOperations: d.instanceOperations, primaryChanges: d.primaryChanges, restoring: d.restoring
    }
  })
  return { hostId: host.hostId, hosts, databases, records }
}

export function toLocal (s: InstanceStatus): LocalInstance {
  return { instanceId: s.instanceId, state: s.state, ...(s.role === undefined ? {} : { role: s.role }), port: s.port, postgresVersion: s.postgresVersion, ...(s.pendingRestart === true ? { pendingRestart: true } : {}) }
}
