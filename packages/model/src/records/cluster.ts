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
  /** API bearer tokens (only their secrets' hashes); absent in documents older than tokens. */
  api_tokens?: Record<string, ApiTokenRecord>
  /** Outstanding join tokens (only their secrets' hashes); absent in documents older than them. */
  join_tokens?: Record<string, JoinTokenRecord>
  /** Which compacted generation this document is (absent: the first, never compacted); see @pgmesh/state. */
  generation?: DocumentGeneration
}

/** A document generation: a new Automerge history that starts from a snapshot of the previous one at `frontier`. */
export interface DocumentGeneration {
  number: number
  /** Every generation boundary so far, oldest first: the heads of generation `number - 1` the next one started from. */
  frontiers: Array<{ number: number, heads: string[] }>
}

/** Who an API identity may be: a viewer reads (GET/HEAD), an operator does everything. */
export type ApiRole = 'viewer' | 'operator'

/** A bearer token of the API. The secret itself is shown once, at creation, and stored nowhere. */
export interface ApiTokenRecord {
  id: string
  name: string
  role: ApiRole
  /** sha256 (hex) of the token's secret. */
  secret_sha256: string
  created_at: string
  expires_at?: string
}

/** A join token: reusable until it expires or is revoked. */
export interface JoinTokenRecord {
  id: string
  /** sha256 (hex) of the token's random part. */
  secret_sha256: string
  created_at: string
  expires_at: string
  /** The host that issued it. */
  issued_by: string
}

export interface ClusterRecord {
  id: string
  created_at: string
  /**
   * The document format its layout needs a host to read (see @pgmesh/state): written by the genesis that laid it out;
   * absent in documents laid out before format 3. A host whose pgmesh reads less refuses to load it.
   */
  document_format?: number
}

export interface RemovedPeer { host_id: string, removed_at: string }

/** The header in which a joining host tells a member the newest document format it reads (absent: 1). */
export const DOCUMENT_FORMAT_HEADER = 'x-pgmesh-document-format'

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
  /**
   * The newest cluster document format this host's pgmesh reads (absent: 1, strings only as text; 2: also scalar
   * strings). Hosts write strings as scalars once every host reads them (see @pgmesh/state).
   */
  document_format?: number
}
