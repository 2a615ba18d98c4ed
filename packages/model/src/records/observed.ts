/** The anchor's subscription status (`spock.sub_show_status`), and why it fails when it does. */
export interface ObservedSubscription {
  provider_node: string
  name: string
  /** `down` also while the last error is held, until the subscription is replicating again. */
  status: string
  /** The apply worker's last error (from the server log), kept until the subscription is replicating again. */
  error?: string
  /** Since when it has been down while its provider's primary is available (RFC 3339, the subscriber's clock). */
  failing_since?: string
  /**
   * pgmesh extension: bytes the subscriber has yet to receive and confirm of its provider's WAL (the provider
   * primary's `pg_current_wal_lsn()` minus its slot's `confirmed_flush_lsn`), as the provider last reported it.
   * Filled in from the provider's report (`subscriber_lag`) when a read joins the two.
   */
  lag_bytes?: number
}

/**
 * One instance as its host sees it, spread by heartbeat to every host (never stored in the document). Field names
 * follow the anchor's Instance where they overlap.
 */
export interface ObservedInstance {
  id: string
  database_id: string
  node_name: string
  host_id: string
  state: 'creating' | 'modifying' | 'available' | 'degraded' | 'failed' | 'stopped' | 'unknown'
  role?: 'primary' | 'replica'
  port?: number
  /** Where clients reach it (the host's client addresses). */
  addresses?: string[]
  postgres_version?: string
  /** The database generation this instance was last brought to. */
  generation: number
  error?: string
  /** Primaries only: the node's subscriptions, as the replication extension reports them. */
  subscriptions?: ObservedSubscription[]
  /** Primaries only, as a provider: how far each subscriber node's slot here is behind this server's WAL. */
  subscriber_lag?: Array<{ subscriber_node: string, lag_bytes: number }>
  /**
   * Primaries: DDL that automatic DDL replication refused on this node (CREATE TABLE AS, SELECT INTO, DDL in a
   * function or DO block), how many statements and the latest; it exists on this node only.
   */
  unreplicated_ddl?: { count: number, last: { logged_at: string, role: string, statement: string, reason: string } }
  /** Primaries: this node exists in the replication extension, so peers can subscribe to it. */
  node_ready?: boolean
  /** The replication extension in use: spock or pglogical. */
  replication?: string
  /**
   * The instance runs with its spec written but not all of it in effect: a restart is due, which the rolling update
   * gives it in its turn.
   */
  pending_restart?: boolean
  /** Restarts asked for (stop/start/restart operations) that this instance has done. */
  restarts?: number
  updated_at: string
}

export interface ComponentStatus { healthy: boolean, error?: string, details?: Record<string, unknown> }

/** A Postgres version a host can run: the anchor's `default_pgedge_version` and `supported_pgedge_versions` items. */
export interface PgVersion { postgres_version: string, spock_version?: string }

/** What a host tells the others about itself in every heartbeat. */
export interface HostObserved {
  version: string
  components: Record<string, ComponentStatus>
  /**
   * Versions this host can run: a process host's installed binaries (`postgres --version` of each major), a Swarm
   * host's version manifest (its stable images).
   */
  postgres_versions?: { default?: PgVersion, supported: PgVersion[] }
  instances?: ObservedInstance[]
}
