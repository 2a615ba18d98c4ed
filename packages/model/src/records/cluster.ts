import type { DatabaseRecord } from './database.js'
import type { Task } from './task.js'

/**
 * The cluster document: the desired state every host holds in full. Only durable, low-churn intent lives here;
 * observed state travels in heartbeats.
 */
export interface ClusterDoc {
  cluster: ClusterRecord
  hosts: Record<string, HostRecord>
  databases: Record<string, DatabaseRecord>
  tasks: Record<string, Task>
  /** Peer ids of removed hosts: nobody dials them or accepts their connections again. */
  removed_peers: Record<string, RemovedPeer>
}

export interface ClusterRecord {
  id: string
  created_at: string
}

export interface RemovedPeer { host_id: string, removed_at: string }

export interface HostRecord {
  id: string
  peer_id: string
  /** libp2p multiaddrs ending in /p2p/<peer_id>; every host dials these. */
  peer_addresses: string[]
  /** Addresses clients use to reach this host's instances and API. */
  client_addresses: string[]
  /** The host's HTTP API base URL. */
  api_url: string
  orchestrator: 'process' | 'swarm'
  data_dir: string
  cpus: number
  /** Total memory in bytes. */
  memory: number
  joined_at: string
}
