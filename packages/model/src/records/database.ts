import { instanceId } from '../ids.js'

export type DatabaseState = 'creating' | 'modifying' | 'available' | 'deleting' | 'degraded' | 'failed' | 'restoring' | 'unknown'

/**
 * A database spec as the cluster document holds it: lists whose items have a name (nodes, users, services) are a map
 * by name plus an order list, so concurrent edits of different items survive a merge; the cluster package encodes
 * and decodes it.
 */
export type EncodedSpec = Record<string, unknown>

/** A database as stored in the cluster document (desired state only). */
export interface DatabaseRecord {
  id: string
  tenant_id?: string
  created_at: string
  updated_at: string
  /** The state the last accepted operation put the database in; observed state refines it. */
  state: DatabaseState
  /** Bumped by every accepted create/update/delete (and force_update), so reconcilers re-run. */
  generation: number
  /** Tombstone: a delete is a flag, never a removal, so it wins over a concurrent update on every host. */
  deleted: boolean
  /** The create/update/delete task that last set the spec. */
  task_id: string
  created_by_host: string
  spec: EncodedSpec
  /** Nodes added to the live database, and the node each copies its data from (the anchor's source_node). */
  node_sources?: Record<string, string>
  /** Per node: term → the instance a majority's lease made primary at that term (the highest term is current). */
  primaries?: Record<string, Record<string, string>>
  /** Per instance: stop/start/restart requests. */
  instance_operations?: Record<string, InstanceOperation>
  /** Per node: the switchover or failover asked for last. */
  primary_changes?: Record<string, PrimaryChangeRequest>
  /** Backups asked for and not finished yet, by task id (the node's primary's host runs them). */
  backup_requests?: Record<string, BackupRequest>
  /** Per `<node>/<schedule id>`: the latest cron tick (RFC 3339) a backup was asked for, or the schedule first seen. */
  backup_ticks?: Record<string, string>
  /** Per node: the in-place restore asked for and not finished yet (the node's primary's host runs it). */
  node_restores?: Record<string, NodeRestore>
}

/** A node_restore task's request, until the host that ran it says how it ended; then it goes. */
export interface NodeRestore {
  task_id: string
  /** The database's `restore` task. */
  parent_id: string
  node_name: string
  /** The request's restore_config, its secrets sealed as the spec's are (the cluster package opens them). */
  restore_config: Record<string, unknown>
  /** The host running it, once started (the host of the node's primary then). */
  host_id?: string
}

/** A node_backup task's request, until the host that ran it says how it ended. */
export interface BackupRequest {
  task_id: string
  node_name: string
  type: 'full' | 'diff' | 'incr'
  annotations?: Record<string, string>
  backup_options?: Record<string, string>
  /** Set for a scheduled backup. */
  schedule_id?: string
  /** The host running it, once started (the host of the node's primary then). */
  host_id?: string
}

/** What the user asked of one instance: kept stopped, and how many restarts were asked for so far. */
export interface InstanceOperation {
  stopped: boolean
  restarts: number
  /** The stop/start/restart task that last changed this record. */
  task_id: string
  /** A restart waits until then (RFC 3339). */
  restart_at?: string
}

/** A switchover or failover asked for one node; the host that can carry it out does. */
export interface PrimaryChangeRequest {
  type: 'switchover' | 'failover'
  task_id: string
  candidate: string
  /** The node's primary term when asked: done once a higher term names the candidate. */
  from_term: number
  scheduled_at?: string
}

export interface NodePrimary { instanceId: string, term: number }

/**
 * The node's primary: the highest term recorded whose instance is still one of the node's, else the first host's
 * instance at term 0. Terms come from leases a majority granted, so two hosts never record the same term for
 * different instances; a merge keeps every entry and every host reads the same highest one.
 */
export function nodePrimary (databaseId: string, nodeName: string, hostIds: readonly string[], primaries: Record<string, string> | undefined): NodePrimary | undefined {
  const instances = new Set(hostIds.map(h => instanceId(databaseId, nodeName, h)))
  let best: NodePrimary | undefined
  for (const [term, id] of Object.entries(primaries ?? {})) {
    const t = Number(term)
    if (!instances.has(id) || !Number.isInteger(t)) continue
    if (best === undefined || t > best.term) best = { instanceId: id, term: t }
  }
  if (best !== undefined) return best
  const first = hostIds[0]
  return first === undefined ? undefined : { instanceId: instanceId(databaseId, nodeName, first), term: 0 }
}
