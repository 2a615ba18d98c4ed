import type { QueryConfig, QueryResult, QueryResultRow } from 'pg'
import type { NodeSpec } from '@pgmesh/model'

/** Anything that runs a parameterised query: a pg Client, PoolClient or Pool. */
export interface Queryable {
  query: <R extends QueryResultRow = QueryResultRow>(config: QueryConfig) => Promise<QueryResult<R>>
}

/** One parameterised statement; pure data, so the SQL each driver generates can be golden-tested. */
export interface Sql { text: string, values: unknown[] }

export type ReplicationKind = 'pglogical' | 'spock'

/** The link from a provider node to a subscriber node; its subscription lives on the subscriber. */
export interface Link { provider: string, subscriber: string }

export interface SubscriptionSpec extends Link {
  providerDsn: string
  /** Copy the provider's schema first (a node joining a live database). Default false. */
  synchronizeStructure?: boolean
  /** Copy the provider's existing rows first. Default false (a new mesh starts empty). */
  synchronizeData?: boolean
}

/** The anchor's subscription status shape (spock.sub_show_status). */
export interface SubscriptionStatus { provider_node: string, name: string, status: string }

/**
 * On a provider: how far one subscriber node's slot here is behind this server's WAL, in bytes
 * (`pg_current_wal_lsn() - confirmed_flush_lsn`): what the subscriber has yet to receive and confirm.
 */
export interface SubscriberLag { subscriber_node: string, lag_bytes: number }

/** A connection to another node's primary, opened by the caller (who owns users, timeouts and session options). */
export interface PeerConnection extends Queryable { end: () => Promise<void> }
export type ConnectPeer = (dsn: string) => Promise<PeerConnection>

/** What one node's primary should be a member of: its node, the peers it subscribes to, every node of the database. */
export interface Membership {
  node: NodeSpec
  /** Nodes this node subscribes to (those whose primary is up). */
  providers: NodeSpec[]
  /** Every node of the database: subscriptions and slots of any other node are dropped. */
  nodes: string[]
  /** When set, this node is new and copies schema and rows from this provider first. */
  sourceNode?: string
}

/**
 * The statements of pglogical's join protocol (a node added to a live database copies from a source while the
 * others keep writing; see membership.ts for the order they run in). Pure data, like the rest of the drivers' SQL.
 */
export interface JoinSql {
  /**
   * On the source: replication sets `<set>` (tables with a primary key) and `<set>_insert_only` (without) holding
   * every replicated table, for one joining node's forwarding subscription. Idempotent.
   */
  createJoinSets: (set: string) => Sql[]
  /** On the source: the join's sets go. */
  dropJoinSets: (set: string) => Sql
  /** On the joining node: subscribes to the source over the join's sets, with schema and row copy and origin forwarding. */
  subscribeForwarding: (name: string, providerDsn: string, set: string) => Sql
  /** On the joining node: returns once the subscription's schema and row copy is done. */
  waitSyncComplete: (name: string) => Sql
  /** On the subscriber: rows `{ slot }`, the provider-side slot of a subscription. */
  subscriptionSlot: (name: string) => Sql
  /** On a provider: one row once the slot exists and has a confirmed position. */
  slotReady: (slot: string) => Sql
  /** On the subscriber: drops one subscription by name (the forwarding one). */
  dropSubscriptionNamed: (name: string) => Sql
}

/** The replication sets every subscription uses: rows with and without primary keys, and replicated DDL. */
export const REPLICATION_SETS = ['default', 'default_insert_only', 'ddl_sql'] as const

/** The anchor's naming: the subscription on S that receives from P is `sub_<P>_<S>`. */
export function subscriptionName (link: Link): string {
  return `sub_${link.provider}_${link.subscriber}`
}

/**
 * Multi-master membership of one node, run against the node primary's application database. Every method is
 * idempotent, so a reconciler can call it on every pass.
 */
export interface ReplicationDriver {
  readonly kind: ReplicationKind
  /** Creates the extension and this database's node when missing; fails if the database is already another node. */
  ensureNode: (conn: Queryable, node: NodeSpec) => Promise<void>
  /**
   * Puts every table that is in no replication set into `default` (or `default_insert_only` without a primary
   * key) and makes tables created later join at creation. Call after ensureNode, and again after a structure sync.
   */
  ensureTablesReplicated: (conn: Queryable) => Promise<void>
  /**
   * On the subscriber: subscribes to the provider (no origin forwarding) when not subscribed yet; pglogical also
   * follows a provider whose DSN changed (Spock: not yet).
   */
  ensureSubscription: (conn: Queryable, subscription: SubscriptionSpec) => Promise<void>
  /** On the subscriber; a missing subscription is fine. */
  dropSubscription: (conn: Queryable, link: Link) => Promise<void>
  /**
   * On a provider: drops the slots that `subscriberNode`'s subscriptions used here, terminating their walsenders
   * first. Returns the dropped slot names.
   */
  dropSlotsFor: (conn: Queryable, subscriberNode: string) => Promise<string[]>
  /** Runs DDL here and on every subscriber. Names must be schema-qualified (it runs with an empty search_path). */
  replicateDdl: (conn: Queryable, command: string) => Promise<void>
  subscriptionStatus: (conn: Queryable) => Promise<SubscriptionStatus[]>
  /** On a provider: each subscriber node's slot lag here (none when this database is no node). */
  subscriberLag: (conn: Queryable) => Promise<SubscriberLag[]>
  /**
   * On the subscriber: disables and enables a subscription whose apply worker is down, so the extension starts a
   * fresh one now instead of after its crash back-off (pglogical waits 5 s after each crash, and checks every 5 s).
   */
  restartSubscription: (conn: Queryable, name: string) => Promise<void>
  /** Each subscription's apply worker as the server log names it (`backend_type`) → the subscription's name. */
  applyWorkers: (conn: Queryable) => Promise<Map<string, string>>
  /** DDL the automatic DDL replication refused on this node (pglogical only; Spock replicates it its own way). */
  unreplicatedDdl: (conn: Queryable) => Promise<UnreplicatedDdl | undefined>
  /**
   * The node's whole membership on its primary: ensureNode, drops what nodes gone from the database left here,
   * subscribes to every provider, and for a node added to a live database runs the join protocol (pglogical: a
   * forwarding subscription from the source, direct subscriptions, a barrier; see membership.ts). `connect` opens
   * connections to other nodes' primaries by DSN (the join works on the source and the other providers too).
   */
  ensureMembership: (conn: Queryable, membership: Membership, connect: ConnectPeer, progress: (message: string) => Promise<void>) => Promise<void>
  /**
   * On a just-promoted primary of `nodeName`: the logical slots the other nodes' subscriptions to this node use
   * (same names as on the old primary), so no change is written that their slots would miss. A no-op when this
   * database is no node (yet), and for Spock (not done there yet).
   */
  ensureProviderSlots: (conn: Queryable, nodeName: string, peers: readonly string[]) => Promise<void>
}

/** How many statements were refused, and the latest (its text cut to 200 characters). */
export interface UnreplicatedDdl { count: number, last: { logged_at: string, role: string, statement: string, reason: string } }

/** The statements behind each driver operation; the executor is shared, only the SQL differs per extension. */
export interface ReplicationSql {
  ensureNode: (node: NodeSpec) => Sql[]
  /** Rows `{ node_name }`: the local node this database already is, if any. */
  localNodeName: () => Sql
  ensureTablesReplicated: () => Sql[]
  ensureSubscription: (subscription: SubscriptionSpec) => Sql[]
  dropSubscription: (link: Link) => Sql[]
  /** Rows `{ slot_name }`: the existing slots here that `subscriberNode`'s subscriptions use. */
  slotsFor: (subscriberNode: string) => Sql
  replicateDdl: (command: string) => Sql
  /** Rows of SubscriptionStatus. */
  subscriptionStatus: () => Sql
  /** Rows of SubscriberLag, `lag_bytes` as a bigint's text. */
  subscriberLag: () => Sql
  disableSubscription: (name: string) => Sql
  enableSubscription: (name: string) => Sql
  /** Rows `{ name, backend_type }`: the backend type the server logs each subscription's apply worker with. */
  applyWorkers: () => Sql
  /** Rows `{ count, logged_at, role, statement, reason }`: the latest refused DDL statement, when any. */
  unreplicatedDdl?: () => Sql
  /** The join protocol's statements (pglogical); without them a new node subscribes directly, its source last. */
  join?: JoinSql
  /** Each returns a row when this database is a node of the extension, checked in order (the extension may be missing). */
  localNodeExists?: () => Sql[]
  /** On a provider: its slot for `subscriber`'s subscription, created when missing. */
  providerSlot?: (provider: string, subscriber: string) => Sql
}

export async function execute<R extends QueryResultRow> (conn: Queryable, statement: Sql): Promise<R[]> {
  return (await conn.query<R>({ text: statement.text, values: statement.values })).rows
}
