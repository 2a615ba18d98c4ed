import type { ApiTokens, Backups, Databases, JoinTokens, Operations, Restores, Tasks } from '@pgmesh/cluster'
import type { Host, HostHealth, HostMetrics, HostTls, Membership } from '@pgmesh/host'
import type { ClusterState } from '@pgmesh/state'
import type { TaskLogEntrySource } from './event-feed.js'

/**
 * What the API serves from, handed over at construction (js-libp2p's components pattern): each route group takes
 * only the parts it answers from.
 */
export interface ApiComponents {
  membership: Pick<Membership, 'initialized' | 'initCluster' | 'joinToken' | 'joinOptions' | 'joinDocument' | 'acceptJoinRecord' | 'joinCluster' | 'removeHost'>
  health: Pick<HostHealth, 'hostViews' | 'hostView'>
  /** The cluster document itself, for its id and heads, and its changes (the event stream). */
  state: Pick<ClusterState, 'doc' | 'heads' | 'on' | 'off'>
  /** Task log entries as any host writes them (the event stream pushes them). */
  taskLogEntries: TaskLogEntrySource
  /** The host answering (the console shows which one it talks to). */
  hostId: string
  databases: Databases
  operations: Operations
  backups: Pick<Backups, 'request'>
  restores: Pick<Restores, 'request'>
  tasks: Tasks
  metrics: Pick<HostMetrics, 'registry'>
  apiTokens: ApiTokens
  joinTokens: Pick<JoinTokens, 'list' | 'revoke'>
  /** The cluster CA a joining host fetches (auto TLS), and whether the host has its certificates yet. */
  tls: Pick<HostTls, 'caCertificate' | 'bootstrapping'>
}

/** A host's parts as the API takes them. */
export function apiComponents (host: Host): ApiComponents {
  const { databases, operations, backups, restores, tasks, apiTokens, joinTokens } = host.document
  return { hostId: host.config.hostId, taskLogEntries: host.taskLogEntries, membership: host.membership, health: host.health, state: host.state, databases, operations, backups, restores, tasks, metrics: host.metrics, apiTokens, joinTokens, tls: host.tls }
}
