/**
 * The cluster document: the desired state every host holds in full. Only durable, low-churn intent lives here;
 * observed state travels in heartbeats.
 */
export interface ClusterDoc {
  cluster: ClusterRecord
  hosts: Record<string, HostRecord>
  databases: Record<string, unknown>
  tasks: Record<string, unknown>
  /** Peer ids of removed hosts: nobody dials them or accepts their connections again. */
  removed_peers: Record<string, { host_id: string, removed_at: string }>
}

export interface ClusterRecord {
  id: string
  created_at: string
}

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

/** Metadata stored in every change's message, for latency figures and the change history. */
export interface ChangeMeta {
  host: string
  /** Wall-clock milliseconds when the change was made. */
  at: number
  /** What the change did, e.g. `host.join`, `database.update`. */
  op: string
  /** The entity it touched, e.g. a database id. */
  entity?: string
}

export function encodeChangeMeta (meta: ChangeMeta): string {
  return JSON.stringify(meta)
}

export function decodeChangeMeta (message: string | null): ChangeMeta | undefined {
  if (message === null) return undefined
  try {
    const parsed = JSON.parse(message) as Partial<ChangeMeta>
    if (typeof parsed.host !== 'string' || typeof parsed.at !== 'number' || typeof parsed.op !== 'string') return undefined
    return parsed as ChangeMeta
  } catch {
    return undefined
  }
}
