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
  /**
   * On the subscriber: disables and enables a subscription whose apply worker is down, so the extension starts a
   * fresh one now instead of after its crash back-off (pglogical waits 5 s after each crash, and checks every 5 s).
   */
  restartSubscription: (conn: Queryable, name: string) => Promise<void>
  /** Each subscription's apply worker as the server log names it (`backend_type`) → the subscription's name. */
  applyWorkers: (conn: Queryable) => Promise<Map<string, string>>
  /** DDL the automatic DDL replication refused on this node (pglogical only; Spock replicates it its own way). */
  unreplicatedDdl: (conn: Queryable) => Promise<UnreplicatedDdl | undefined>
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
  disableSubscription: (name: string) => Sql
  enableSubscription: (name: string) => Sql
  /** Rows `{ name, backend_type }`: the backend type the server logs each subscription's apply worker with. */
  applyWorkers: () => Sql
  /** Rows `{ count, logged_at, role, statement, reason }`: the latest refused DDL statement, when any. */
  unreplicatedDdl?: () => Sql
}

export async function execute<R extends QueryResultRow> (conn: Queryable, statement: Sql): Promise<R[]> {
  return (await conn.query<R>({ text: statement.text, values: statement.values })).rows
}
