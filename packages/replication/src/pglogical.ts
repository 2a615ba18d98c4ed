import { createEventTriggerOnce, ddlCaptureStatements } from './ddl-capture.js'
import { pglogicalJoinSql } from './join.js'
import { REPLICATION_SETS, type ReplicationSql, type Sql, subscriptionName } from './driver.js'

const sets = `ARRAY[${REPLICATION_SETS.map(s => `'${s}'`).join(', ')}]`

/**
 * pglogical adds no table to a replication set by itself (research §C), and a row written before its table joins
 * is never replicated. So an event trigger adds each new table in the transaction that creates it, on every node:
 * it is ENABLE ALWAYS, hence it also fires when pglogical's apply worker runs DDL from replicate_ddl_command.
 * Tables without a primary key go to `default_insert_only` (pglogical refuses them in a set that replicates
 * UPDATE/DELETE) and move to `default` once a primary key is added. The trigger function is SECURITY DEFINER so
 * that non-superusers can still create tables. A periodic replication_set_add_all_tables was the alternative; it
 * loses the rows written before the next pass and fails on the first table without a primary key.
 */
const REPLICATE_TABLE_FUNCTION = `CREATE OR REPLACE FUNCTION pgmesh_repl.replicate_table(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  has_primary_key boolean := EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = rel AND indisprimary);
  sets name[] := ARRAY(SELECT set_name FROM pglogical.tables WHERE relid = rel AND set_name IS NOT NULL);
BEGIN
  IF cardinality(sets) = 0 THEN
    PERFORM pglogical.replication_set_add_table(CASE WHEN has_primary_key THEN 'default' ELSE 'default_insert_only' END, rel);
  ELSIF sets = ARRAY['default_insert_only']::name[] AND has_primary_key THEN
    PERFORM pglogical.replication_set_remove_table('default_insert_only', rel);
    PERFORM pglogical.replication_set_add_table('default', rel);
  END IF;
END
$fn$`

const TRIGGER_FUNCTION = `CREATE OR REPLACE FUNCTION pgmesh_repl.replicate_new_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  -- A user's deliberate local change (pgmesh.replicate_ddl = off) creates a table the other nodes do not have.
  local_session boolean := current_setting('session_replication_role') <> 'replica'
                           AND current_setting('pgmesh.replicate_ddl', true) = 'off';
  created record;
BEGIN
  -- Not a pglogical node (yet): nothing to join, and creating tables must keep working.
  IF NOT EXISTS (SELECT 1 FROM pglogical.local_node) THEN
    RETURN;
  END IF;
  FOR created IN SELECT DISTINCT objid, command_tag FROM pg_catalog.pg_event_trigger_ddl_commands()
                  WHERE object_type = 'table' AND NOT in_extension LOOP
    -- Tables made from this node's rows (CREATE TABLE AS, SELECT INTO) exist here only: their rows must not
    -- replicate to nodes that lack them, and the sweep below must leave them out too.
    IF created.command_tag IN ('CREATE TABLE AS', 'SELECT INTO') OR (created.command_tag = 'CREATE TABLE' AND local_session) THEN
      INSERT INTO pgmesh_repl.local_tables (relid) VALUES (created.objid) ON CONFLICT DO NOTHING;
    -- pglogical.tables lists exactly the tables pglogical can replicate (permanent, ordinary, user schemas).
    ELSIF EXISTS (SELECT 1 FROM pglogical.tables t WHERE t.relid = created.objid AND t.nspname <> 'pgmesh_repl')
      AND NOT EXISTS (SELECT 1 FROM pgmesh_repl.local_tables l WHERE l.relid = created.objid) THEN
      PERFORM pgmesh_repl.replicate_table(created.objid);
    END IF;
  END LOOP;
END
$fn$`

/**
 * The event triggers run these functions in every session, a superuser's too: a schema or function someone else
 * created first (a database owner may create schemas) would run their code as that session's user. Refuse, loudly.
 */
const REFUSE_FOREIGN_SCHEMA = `DO $do$
DECLARE
  me oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user);
  schema oid := pg_catalog.to_regnamespace('pgmesh_repl');
  foreign_owner name;
BEGIN
  SELECT r.rolname INTO foreign_owner FROM pg_catalog.pg_roles r
   WHERE r.oid <> me AND r.oid IN (
     SELECT nspowner FROM pg_catalog.pg_namespace WHERE oid = schema
     UNION ALL SELECT proowner FROM pg_catalog.pg_proc WHERE pronamespace = schema
     UNION ALL SELECT relowner FROM pg_catalog.pg_class WHERE relnamespace = schema
     UNION ALL SELECT typowner FROM pg_catalog.pg_type WHERE typnamespace = schema)
   LIMIT 1;
  IF foreign_owner IS NOT NULL THEN
    RAISE EXCEPTION 'schema pgmesh_repl holds objects owned by %: refusing to install DDL replication in it', foreign_owner
      USING HINT = 'pgmesh creates this schema itself; drop the other owner''s schema or objects as a superuser.';
  END IF;
END
$do$`

/**
 * Earlier versions kept these functions in a schema named `pgmesh`, which is also the superuser's name: `"$user"` in
 * the default search_path then put that user's unqualified tables there. Their trigger and functions go; the schema
 * stays (a user may have put tables in it).
 */
const RETIRE_PGMESH_SCHEMA_OBJECTS = `DO $do$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger e JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
              WHERE e.evtname = 'pgmesh_replicate_new_tables' AND p.pronamespace = pg_catalog.to_regnamespace('pgmesh')) THEN
    DROP EVENT TRIGGER pgmesh_replicate_new_tables;
  END IF;
  IF pg_catalog.to_regnamespace('pgmesh') IS NOT NULL THEN
    DROP FUNCTION IF EXISTS pgmesh.replicate_new_tables();
    DROP FUNCTION IF EXISTS pgmesh.replicate_table(regclass);
  END IF;
END
$do$`

/** The SQL of the pglogical 2 driver (Debian's postgresql-NN-pglogical). */
export const pglogicalSql: ReplicationSql = {
  join: pglogicalJoinSql,

  localNodeExists: () => [
    { text: "SELECT 1 FROM pg_extension WHERE extname = 'pglogical'", values: [] },
    { text: 'SELECT 1 FROM pglogical.local_node', values: [] }
  ],

  providerSlot: (provider, subscriber) => ({
    text: `SELECT pg_create_logical_replication_slot(s.name, 'pglogical_output')
                     FROM (SELECT pglogical.pglogical_gen_slot_name(current_database()::name, $1::name, ('sub_' || $1 || '_' || $2)::name)::text AS name) s
                    WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots r WHERE r.slot_name = s.name)`,
    values: [provider, subscriber]
  }),

  ensureNode: node => [
    { text: 'CREATE EXTENSION IF NOT EXISTS pglogical', values: [] },
    {
      text: 'SELECT pglogical.create_node(node_name := $1::name, dsn := $2::text) WHERE NOT EXISTS (SELECT 1 FROM pglogical.local_node)',
      values: [node.nodeName, node.dsn]
    },
    ...followMovedLocalNode(node.dsn)
  ],

  localNodeName: () => ({
    text: 'SELECT n.node_name::text AS node_name FROM pglogical.local_node l JOIN pglogical.node n ON n.node_id = l.node_id',
    values: []
  }),

  ensureTablesReplicated: () => [
    { text: 'CREATE SCHEMA IF NOT EXISTS pgmesh_repl', values: [] },
    { text: REFUSE_FOREIGN_SCHEMA, values: [] },
    { text: RETIRE_PGMESH_SCHEMA_OBJECTS, values: [] },
    ...ddlCaptureStatements(),
    { text: REPLICATE_TABLE_FUNCTION, values: [] },
    { text: TRIGGER_FUNCTION, values: [] },
    createEventTriggerOnce('pgmesh_replicate_new_tables', `ON ddl_command_end
      WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
      EXECUTE FUNCTION pgmesh_repl.replicate_new_tables()`),
    { text: 'ALTER EVENT TRIGGER pgmesh_replicate_new_tables ENABLE ALWAYS', values: [] },
    {
      text: `SELECT pgmesh_repl.replicate_table(t.relid) FROM pglogical.tables t
  WHERE t.set_name IS NULL AND t.nspname <> 'pgmesh_repl' AND NOT EXISTS (SELECT 1 FROM pgmesh_repl.local_tables l WHERE l.relid = t.relid)`,
      values: []
    }
  ],

  ensureSubscription: sub => [{
    text: `SELECT pglogical.create_subscription(subscription_name := $1::name, provider_dsn := $2::text,
  replication_sets := ${sets}, synchronize_structure := $3::boolean, synchronize_data := $4::boolean,
  forward_origins := '{}'::text[])
WHERE NOT EXISTS (SELECT 1 FROM pglogical.subscription WHERE sub_name = $1::name)`,
    values: [subscriptionName(sub), sub.providerDsn, sub.synchronizeStructure ?? false, sub.synchronizeData ?? false]
  }, ...followMovedProvider(subscriptionName(sub), sub.providerDsn)],

  dropSubscription: link => [{
    text: 'SELECT pglogical.drop_subscription(subscription_name := $1::name, ifexists := true)',
    values: [subscriptionName(link)]
  }],

  // pglogical names a slot after the subscriber's database, the provider node and the subscription, shortening
  // long parts with a hash; its own generator computes it, with this database standing for the subscriber's.
  slotsFor: subscriberNode => ({
    text: `SELECT s.slot_name::text AS slot_name
  FROM pglogical.local_node l JOIN pglogical.node n ON n.node_id = l.node_id
  JOIN pg_catalog.pg_replication_slots s
    ON s.slot_name = pglogical.pglogical_gen_slot_name(current_database()::name, n.node_name, ('sub_' || n.node_name || '_' || $1::text)::name)
   AND s.database = current_database()`,
    values: [subscriberNode]
  }),

  replicateDdl: command => ({
    text: "SELECT pglogical.replicate_ddl_command($1::text, ARRAY['ddl_sql'])",
    values: [command]
  }),

  // Every other node this one knows subscribes to it in the full mesh, through the slot named as slotsFor names it;
  // a node whose slot is not here yet has no row. Lag counts from this server's WAL end, so it includes WAL of other
  // databases the slot's walsender must read past; a slot idle and caught up is near 0.
  subscriberLag: () => ({
    text: `SELECT o.node_name::text AS subscriber_node,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint::text AS lag_bytes
  FROM pglogical.local_node l JOIN pglogical.node n ON n.node_id = l.node_id
  JOIN pglogical.node o ON o.node_id <> l.node_id
  JOIN pg_catalog.pg_replication_slots s
    ON s.slot_name = pglogical.pglogical_gen_slot_name(current_database()::name, n.node_name, ('sub_' || n.node_name || '_' || o.node_name)::name)
   AND s.database = current_database()
 WHERE s.confirmed_flush_lsn IS NOT NULL
 ORDER BY 1`,
    values: []
  }),

  subscriptionStatus: () => ({
    text: 'SELECT provider_node, subscription_name AS name, status FROM pglogical.show_subscription_status() ORDER BY subscription_name',
    values: []
  }),

  disableSubscription: name => ({ text: 'SELECT pglogical.alter_subscription_disable($1::name, true)', values: [name] }),
  enableSubscription: name => ({ text: 'SELECT pglogical.alter_subscription_enable($1::name, true)', values: [name] }),

  unreplicatedDdl: () => ({
    text: `SELECT (SELECT count(*) FROM pgmesh_repl.unreplicated_ddl)::int AS count, u.logged_at, u.role::text AS role,
       left(u.statement, 200) AS statement, u.reason
  FROM pgmesh_repl.unreplicated_ddl u ORDER BY u.id DESC LIMIT 1`,
    values: []
  }),

  // The worker is registered as `pglogical apply <database oid>:<subscription id>` (pglogical_worker.c).
  applyWorkers: () => ({
    text: `SELECT s.sub_name::text AS name, 'pglogical apply ' || d.oid || ':' || s.sub_id AS backend_type
  FROM pglogical.subscription s, pg_catalog.pg_database d WHERE d.datname = current_database()`,
    values: []
  })
}

/**
 * A provider that moved (another address or port) gets a new interface named after its DSN, and the subscription
 * switches to it (pglogical restarts its apply worker); nothing happens while the DSN is unchanged.
 */
function followMovedProvider (subscription: string, dsn: string): Sql[] {
  const moved = `FROM pglogical.subscription s
  JOIN pglogical.node n ON n.node_id = s.sub_origin
  JOIN pglogical.node_interface i ON i.if_id = s.sub_origin_if
WHERE s.sub_name = $1::name AND i.if_dsn <> $2::text`
  const interfaceName = "('if_' || left(md5($2::text), 16))::name"
  return [{
    text: `SELECT pglogical.alter_node_add_interface(n.node_name, ${interfaceName}, $2::text)
${moved}
  AND NOT EXISTS (SELECT 1 FROM pglogical.node_interface j WHERE j.if_nodeid = n.node_id AND j.if_name = ${interfaceName})`,
    values: [subscription, dsn]
  }, {
    text: `SELECT pglogical.alter_subscription_interface(s.sub_name, ${interfaceName})
${moved}`,
    values: [subscription, dsn]
  }]
}

/**
 * A node whose own DSN changed (another port): pglogical connects to it when it creates a subscription and for
 * the initial copy, so the local node gets a new interface and uses it. pglogical has no function that switches
 * the local interface, hence the catalog update.
 */
function followMovedLocalNode (dsn: string): Sql[] {
  const interfaceName = "('if_' || left(md5($1::text), 16))::name"
  return [{
    text: `SELECT pglogical.alter_node_add_interface(n.node_name, ${interfaceName}, $1::text)
  FROM pglogical.local_node l
  JOIN pglogical.node n ON n.node_id = l.node_id
  JOIN pglogical.node_interface i ON i.if_id = l.node_local_interface
WHERE i.if_dsn <> $1::text
  AND NOT EXISTS (SELECT 1 FROM pglogical.node_interface j WHERE j.if_nodeid = n.node_id AND j.if_name = ${interfaceName})`,
    values: [dsn]
  }, {
    text: `UPDATE pglogical.local_node l SET node_local_interface = j.if_id
  FROM pglogical.node_interface i, pglogical.node_interface j
WHERE i.if_id = l.node_local_interface AND i.if_dsn <> $1::text
  AND j.if_nodeid = l.node_id AND j.if_name = ${interfaceName}`,
    values: [dsn]
  }]
}
