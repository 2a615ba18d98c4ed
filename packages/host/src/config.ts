import type { ComponentStatus, HostObserved, ObservedInstance } from '@pgmesh/model'
import type { CompactionPolicy } from '@pgmesh/state'
import type { TlsSettings } from './tls.js'

export interface HostConfig {
  hostId: string
  dataDir: string
  /** The HTTP API base URL other hosts and clients use for this host. */
  apiUrl: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  announce: string[]
  /** Multiaddrs of hosts to join through at start (with `clusterKeyFile`). */
  bootstrap: string[]
  /** A cluster key to join with, copied into the data dir on first start. */
  clusterKeyFile?: string
  orchestrator: 'process' | 'swarm'
  clientAddresses: string[]
  /** The Postgres version new databases get when their spec names none. */
  defaultPostgresVersion?: string
  /** The operator's version manifest (JSON), merged over the embedded one; see ManifestSource. */
  manifestPath?: string
  /** Heartbeat period and the silence after which a host is unreachable. */
  heartbeatMs?: number
  unreachableAfterMs?: number
  /** How long a primary's lease lasts (default 4 s); failover takes a little longer than that. */
  leaseMs?: number
  /** How the API is secured (default: none, plain HTTP). */
  tls?: TlsSettings
  /**
   * Document history compaction (generations; see @pgmesh/state's README): off unless set. Only the member with the
   * smallest host id starts one, so this matters on that host; every host follows a later generation regardless.
   */
  historyCompaction?: CompactionPolicy & {
    /** Finished tasks older than this at the frontier move to each host's task archive; default 30 days. */
    taskRetentionMs?: number
  }
}

/** What the host reports of parts that run beside it; the daemon wires them in at construction. */
export interface HostSources {
  /** This host's instances as its reconciler sees them (none on a control-only host). */
  ownInstances?: () => ObservedInstance[]
  /** Components beyond the mesh and the document (the swarm orchestrator's `docker`). */
  components?: Readonly<Record<string, () => ComponentStatus>>
  /** The Postgres versions this host can run (the hosts' `default_pgedge_version` and `supported_pgedge_versions`). */
  postgresVersions?: () => HostObserved['postgres_versions']
  /** Bytes of Automerge's WebAssembly memory, when the executable can see it (the `pgmesh_automerge_memory_bytes` gauge). */
  automergeMemoryBytes?: () => number
}
