import { REPLICATION_SETS, type ReplicationSql, type Sql, subscriptionName } from './driver.js'

const sets = `ARRAY[${REPLICATION_SETS.map(s => `'${s}'`).join(', ')}]`

/**
 * The SQL of the Spock 5 driver, as Spock 5 documents it and the anchor runs it (research §5.1–5.3). Spock
 * replicates DDL by itself (spock.enable_ddl_replication) and adds new tables to the default set
 * (spock.include_ddl_repset), so ensureTablesReplicated only has to place the tables that exist already.
 * Spock is in no package repository this project can reach: this SQL is checked by golden tests only.
 */
export const spockSql: ReplicationSql = {
  ensureNode: node => [
    { text: 'CREATE EXTENSION IF NOT EXISTS spock', values: [] },
    {
      text: 'SELECT spock.node_create(node_name := $1::name, dsn := $2::text) WHERE NOT EXISTS (SELECT 1 FROM spock.local_node)',
      values: [node.nodeName, node.dsn]
    }
  ],

  localNodeName: () => ({
    text: 'SELECT n.node_name::text AS node_name FROM spock.local_node l JOIN spock.node n ON n.node_id = l.node_id',
    values: []
  }),

  ensureTablesReplicated: () => [{
    text: `SELECT spock.repset_add_table(
  CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = t.relid AND i.indisprimary)
       THEN 'default' ELSE 'default_insert_only' END, t.relid::regclass)
FROM spock.tables t WHERE t.set_name IS NULL`,
    values: []
  }],

  ensureSubscription: sub => [{
    text: `SELECT spock.sub_create(subscription_name := $1::name, provider_dsn := $2::text,
  replication_sets := ${sets}, synchronize_structure := $3::boolean, synchronize_data := $4::boolean,
  forward_origins := '{}'::text[], enabled := true)
WHERE NOT EXISTS (SELECT 1 FROM spock.subscription WHERE sub_name = $1::name)`,
    values: [subscriptionName(sub), sub.providerDsn, sub.synchronizeStructure ?? false, sub.synchronizeData ?? false]
  }],

  dropSubscription: link => [{
    text: 'SELECT spock.sub_drop(subscription_name := $1::name, ifexists := true)',
    values: [subscriptionName(link)]
  }],

  // Slots are `spk_<db>_<provider>_sub_<provider>_<subscriber>` (long parts hash-shortened by spock_gen_slot_name).
  slotsFor: subscriberNode => ({
    text: `SELECT s.slot_name::text AS slot_name
  FROM spock.local_node l JOIN spock.node n ON n.node_id = l.node_id
  JOIN pg_catalog.pg_replication_slots s
    ON s.slot_name = spock.spock_gen_slot_name(current_database()::name, n.node_name, ('sub_' || n.node_name || '_' || $1::text)::name)
   AND s.database = current_database()`,
    values: [subscriberNode]
  }),

  replicateDdl: command => ({
    text: "SELECT spock.replicate_ddl($1::text, ARRAY['ddl_sql'])",
    values: [command]
  }),

  // Every other node this one knows subscribes to it in the full mesh, through the slot named as slotsFor names it;
  // a node whose slot is not here yet has no row. Lag counts from this server's WAL end, so it includes WAL of other
  // databases the slot's walsender must read past; a slot idle and caught up is near 0.
  subscriberLag: () => ({
    text: `SELECT o.node_name::text AS subscriber_node,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint::text AS lag_bytes
  FROM spock.local_node l JOIN spock.node n ON n.node_id = l.node_id
  JOIN spock.node o ON o.node_id <> l.node_id
  JOIN pg_catalog.pg_replication_slots s
    ON s.slot_name = spock.spock_gen_slot_name(current_database()::name, n.node_name, ('sub_' || n.node_name || '_' || o.node_name)::name)
   AND s.database = current_database()
 WHERE s.confirmed_flush_lsn IS NOT NULL
 ORDER BY 1`,
    values: []
  }),

  subscriptionStatus: () => ({
    text: 'SELECT provider_node, subscription_name AS name, status FROM spock.sub_show_status() ORDER BY subscription_name',
    values: []
  }),

  disableSubscription: name => ({ text: 'SELECT spock.sub_disable($1::name, true)', values: [name] }),
  enableSubscription: name => ({ text: 'SELECT spock.sub_enable($1::name, true)', values: [name] }),

  // Spock 5 registers the worker as `spock apply <database oid>:<subscription id>` (spock_worker.c).
  applyWorkers: () => ({
    text: `SELECT s.sub_name::text AS name, 'spock apply ' || d.oid || ':' || s.sub_id AS backend_type
  FROM spock.subscription s, pg_catalog.pg_database d WHERE d.datname = current_database()`,
    values: []
  })
}

/**
 * Spock's repair mode keeps the statements of the current transaction out of replication; the anchor creates
 * roles and users in it so each node keeps its own. Wrap the work: BEGIN, repair_mode(true), work, COMMIT.
 */
export function spockRepairMode (enabled: boolean): Sql {
  return { text: 'SELECT spock.repair_mode($1::boolean)', values: [enabled] }
}
