import type { DatabaseSpec, InstanceOperation, InstanceSpec, InstanceState, NodeSpec, ObservedInstance, PrimaryChangeRequest } from '@pgmesh/model'

/** What the converged document asks of the cluster, as the planner needs it. */
export interface Desired {
  hostId: string
  hosts: Array<{ id: string, addresses: string[] }>
  databases: DesiredDatabase[]
}

export interface DesiredDatabase {
  id: string
  generation: number
  deleted: boolean
  /** The current task was canceled: leave the database as it is until the next update. */
  paused: boolean
  /** Undefined when the merged spec is invalid: nothing is applied until an update fixes it. */
  spec: DatabaseSpec | undefined
  /** Nodes added to a live database, with the node each copies its data from. */
  sources: Record<string, string>
  /** Per node: term → instance made primary at that term (the highest term is the node's primary). */
  primaries?: Record<string, Record<string, string>>
  /** Per instance: the user's stop/start/restart requests. */
  instanceOperations?: Record<string, InstanceOperation>
  /** Per node: the switchover or failover asked for last (carried out by the HA loop, not the planner). */
  primaryChanges?: Record<string, PrimaryChangeRequest>
  /**
   * Nodes with an in-place restore under way (node → its node_restore task): the restore runner owns the node's
   * primary, its replicas go (cloned again afterwards), and no node replicates with it meanwhile.
   */
  restoring?: Record<string, string>
}

/** What this host applied last to one of its instances (kept on disk beside the instances). */
export interface AppliedInstance {
  instanceId: string
  databaseId: string
  nodeName: string
  generation: number
  specHash: string
  /** Hash of the replication membership last applied (primaries only). */
  replicationHash?: string
  /** What the instance was created as or promoted to (a primary is never demoted in place). */
  role?: 'primary' | 'replica'
  /** Restarts asked for and done so far. */
  restarts?: number
  error?: string
}

export interface LocalInstance {
  instanceId: string
  state: InstanceState
  role?: 'primary' | 'replica'
  port: number
  postgresVersion: string
  /** Running with a change written that waits for its restart (its turn in the rolling restart). */
  pendingRestart?: boolean
}

export interface Observed {
  /** This host's instances as its orchestrator sees them. */
  local: LocalInstance[]
  applied: AppliedInstance[]
  /** Every host's gossiped instances (this host's included). */
  cluster: ObservedInstance[]
  /** This host's instances that hold their node's lease now (only those may run as, or become, a primary). */
  leases?: string[]
  /** This host's primaries that lost their lease and were stopped: kept stopped until they hold it again. */
  fenced?: string[]
  /** Per local primary: the replicas that must acknowledge its commits (default: all not stopped by the user). */
  synchronous?: Record<string, string[]>
  /** Wall-clock time of the pass (scheduled restarts). */
  now?: number
}

export type Action =
  | { kind: 'ensure-instance', databaseId: string, nodeName: string, instanceId: string, generation: number, specHash: string, spec: InstanceSpec }
  | {
    kind: 'ensure-replication'
    databaseId: string
    nodeName: string
    instanceId: string
    generation: number
    hash: string
    databaseName: string
    node: NodeSpec
    /** Nodes this node subscribes to, with their DSNs (only those whose primary is up). */
    providers: NodeSpec[]
    /** Every node of the database: subscriptions and slots of other nodes are dropped. */
    nodes: string[]
    /** When set, this node is new and copies schema and rows from this provider first. */
    sourceNode?: string
  }
  | { kind: 'remove-instance', instanceId: string, databaseId: string | undefined }
  | { kind: 'stop-instance', databaseId: string, instanceId: string }
  | { kind: 'restart-instance', databaseId: string, instanceId: string, restarts: number }
  | {
    kind: 'promote-instance'
    databaseId: string
    nodeName: string
    instanceId: string
    databaseName: string
    /** Physical slots the node's other instances stream from once they follow this one. */
    replicaSlots: string[]
    /** The other nodes, whose subscriptions to this node need their logical slots here. */
    peers: string[]
  }
  /** A former primary that must follow the node's new primary: its data is discarded and cloned again. */
  | { kind: 'rebuild-instance', databaseId: string, nodeName: string, instanceId: string, generation: number, specHash: string, spec: InstanceSpec }
