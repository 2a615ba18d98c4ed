import { type ObservedInstance, rfc3339 } from '@pgmesh/model'
import { type InstanceStatus, parseInstanceId } from '@pgmesh/orchestrator'
import type { ReconcilerHost } from './deps.js'
import type { Failures } from './failures.js'
import type { SubscriptionPoller } from './subscriptions.js'
import type { AppliedInstance } from './types.js'

export interface ReportsDeps {
  host: Pick<ReconcilerHost, 'hostId' | 'document' | 'databases'>
  applied: () => readonly AppliedInstance[]
  isApplied: (instanceId: string) => boolean
  local: (instanceId: string) => InstanceStatus | undefined
  failures: Pick<Failures, 'get' | 'failed' | 'entries'>
  replication: Pick<SubscriptionPoller, 'report' | 'unreplicatedDdl'>
  clock?: () => string
}

/**
 * This host's instances as the anchor's Instance sees them, for heartbeats and reads. `updated_at` is when what is
 * reported last changed, so an unchanged report is the same bytes and readers can keep what they built from it.
 */
export class Reports {
  /** What each instance's report last said, and since when. */
  private reportedSince = new Map<string, { fingerprint: string, since: string }>()

  constructor (private readonly deps: ReportsDeps) {}

  observedInstances (): ObservedInstance[] {
    const { host, failures } = this.deps
    const out: Array<Omit<ObservedInstance, 'updated_at'>> = []
    const addresses = [...(host.document.doc.hosts?.[host.hostId]?.client_addresses ?? [])]
    const desired = host.databases.generations()
    for (const record of this.deps.applied()) {
      const status = this.deps.local(record.instanceId)
      const error = failures.get(record.instanceId)?.message
      const failed = failures.failed(record.instanceId)
      const generation = desired.get(record.databaseId)?.generation ?? 0
      let state: ObservedInstance['state']
      if (failed) state = 'failed'
      else if (status === undefined) state = 'unknown'
      else if (status.state === 'stopped') state = 'stopped'
      else if (status.state === 'crashed') state = 'degraded'
      else if (status.state === 'starting' || record.generation < generation) state = 'modifying'
      else state = 'available'
      // Subscriptions only while its replication is applied: a report from before it was dropped says nothing now.
      const replication = record.replicationHash === undefined ? undefined : this.deps.replication.report(record.instanceId)
      const refused = this.deps.replication.unreplicatedDdl(record.instanceId)
      out.push({
        id: record.instanceId, database_id: record.databaseId, node_name: record.nodeName, host_id: host.hostId, state,
        ...(status?.role === undefined ? {} : { role: status.role }),
        ...(status === undefined ? {} : { port: status.port, postgres_version: status.postgresVersion, addresses }),
        // A failing instance reports the generation it fails to reach, so that task fails instead of waiting.
        generation: failed ? Math.max(record.generation, generation) : record.generation,
        ...(error === undefined ? {} : { error }),
        ...(replication === undefined || status?.role !== 'primary' ? {} : { subscriptions: replication.subscriptions, replication: replication.kind }),
        ...(replication?.subscriberLag === undefined || status?.role !== 'primary' ? {} : { subscriber_lag: replication.subscriberLag }),
        ...(status?.role !== 'primary' || refused === undefined ? {} : { unreplicated_ddl: refused }),
        ...(record.replicationHash === undefined ? {} : { node_ready: true }),
        ...(record.restarts === undefined ? {} : { restarts: record.restarts }),
        ...(status?.pendingRestart === true && status.state === 'running' ? { pending_restart: true } : {})
      })
    }
    for (const [id, failure] of failures.entries()) {
      if (this.deps.isApplied(id)) continue
      const [databaseId, nodeName] = parseInstance(id, desired)
      out.push({
        id, database_id: databaseId, node_name: nodeName, host_id: host.hostId, state: failures.failed(id) ? 'failed' : 'creating',
        generation: desired.get(databaseId)?.generation ?? 0, error: failure.message
      })
    }
    return this.stampChanges(out)
  }

  /** Each instance's report with the time it last changed. */
  private stampChanges (reports: Array<Omit<ObservedInstance, 'updated_at'>>): ObservedInstance[] {
    const now = (this.deps.clock ?? rfc3339)()
    const seen = new Map<string, { fingerprint: string, since: string }>()
    const stamped = reports.map(report => {
      // Lag moves with every write on the provider; `updated_at` says when the instance's state last changed.
      const { subscriber_lag: _lag, ...state } = report
      const fingerprint = JSON.stringify(state)
      const previous = this.reportedSince.get(report.id)
      const since = previous?.fingerprint === fingerprint ? previous.since : now
      seen.set(report.id, { fingerprint, since })
      return { ...report, updated_at: since }
    })
    this.reportedSince = seen
    return stamped
  }
}

/** Which database and node an instance id belongs to (`<db>-<node>-<hash8>`), for instances that never applied. */
function parseInstance (id: string, desired: Map<string, unknown>): [string, string] {
  const parts = parseInstanceId(id)
  return parts !== undefined && desired.has(parts.databaseId) ? [parts.databaseId, parts.nodeName] : ['', '']
}
