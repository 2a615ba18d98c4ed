import { formatDsn } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { subscriptionName } from './driver.js'
import { pglogicalJoinSql } from './join.js'
import { pglogicalSql } from './pglogical.js'
import { dropInactiveSlots, dropSlot, pglogicalSlots, slotConfirmed, terminateSlotUsers } from './slots.js'
import { spockRepairMode, spockSql } from './spock.js'

const subscription = { provider: 'n1', subscriber: 'n2', providerDsn: 'host=10.0.0.1 port=5432 dbname=app user=pgmesh' }

describe('naming', () => {
  it('names subscriptions the anchor way: sub_<provider>_<subscriber>', () => {
    expect(subscriptionName({ provider: 'n3', subscriber: 'n1' })).toBe('sub_n3_n1')
  })

  it('formats DSNs, quoting values that need it', () => {
    expect(formatDsn({ host: '10.0.0.1', port: 5432, dbname: 'my app', user: "o'neil" }))
      .toBe("host=10.0.0.1 port=5432 dbname='my app' user='o\\'neil'")
  })
})

// Spock cannot be installed on this machine, so its driver is checked against the SQL Spock 5 documents
// (spock--5.0.0.sql signatures: node_create, sub_create, sub_drop, repset_add_table, replicate_ddl, repair_mode).
describe('Spock 5 SQL (golden)', () => {
  it('creates the extension and the node only when this database is no node yet', () => {
    expect(spockSql.ensureNode({ nodeName: 'n1', dsn: 'host=a dbname=app' })).toEqual([
      { text: 'CREATE EXTENSION IF NOT EXISTS spock', values: [] },
      {
        text: 'SELECT spock.node_create(node_name := $1::name, dsn := $2::text) WHERE NOT EXISTS (SELECT 1 FROM spock.local_node)',
        values: ['n1', 'host=a dbname=app']
      }
    ])
  })

  it('subscribes with the default sets, no origin forwarding, enabled', () => {
    expect(spockSql.ensureSubscription({ ...subscription, synchronizeStructure: true, synchronizeData: true })).toEqual([{
      text: `SELECT spock.sub_create(subscription_name := $1::name, provider_dsn := $2::text,
  replication_sets := ARRAY['default', 'default_insert_only', 'ddl_sql'], synchronize_structure := $3::boolean, synchronize_data := $4::boolean,
  forward_origins := '{}'::text[], enabled := true)
WHERE NOT EXISTS (SELECT 1 FROM spock.subscription WHERE sub_name = $1::name)`,
      values: ['sub_n1_n2', subscription.providerDsn, true, true]
    }])
  })

  it('drops subscriptions if they exist', () => {
    expect(spockSql.dropSubscription({ provider: 'n3', subscriber: 'n1' }))
      .toEqual([{ text: 'SELECT spock.sub_drop(subscription_name := $1::name, ifexists := true)', values: ['sub_n3_n1'] }])
  })

  it("finds a removed subscriber's slots by Spock's own slot naming (spk_<db>_<p>_sub_<p>_<s>)", () => {
    expect(spockSql.slotsFor('n3')).toEqual({
      text: `SELECT s.slot_name::text AS slot_name
  FROM spock.local_node l JOIN spock.node n ON n.node_id = l.node_id
  JOIN pg_catalog.pg_replication_slots s
    ON s.slot_name = spock.spock_gen_slot_name(current_database()::name, n.node_name, ('sub_' || n.node_name || '_' || $1::text)::name)
   AND s.database = current_database()`,
      values: ['n3']
    })
  })

  it('places existing tables by primary key, replicates DDL, reads status, toggles repair mode, restarts a subscription', () => {
    expect(spockSql.ensureTablesReplicated()).toEqual([{
      text: `SELECT spock.repset_add_table(
  CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = t.relid AND i.indisprimary)
       THEN 'default' ELSE 'default_insert_only' END, t.relid::regclass)
FROM spock.tables t WHERE t.set_name IS NULL`,
      values: []
    }])
    expect(spockSql.replicateDdl('CREATE TABLE public.t (id int)'))
      .toEqual({ text: "SELECT spock.replicate_ddl($1::text, ARRAY['ddl_sql'])", values: ['CREATE TABLE public.t (id int)'] })
    expect(spockSql.subscriptionStatus()).toEqual({
      text: 'SELECT provider_node, subscription_name AS name, status FROM spock.sub_show_status() ORDER BY subscription_name',
      values: []
    })
    expect(spockSql.localNodeName().text).toContain('FROM spock.local_node')
    // Lag is read from the slot each extension's own generator names, on the provider.
    expect(spockSql.subscriberLag().text).toContain('spock.spock_gen_slot_name(current_database()::name, n.node_name')
    expect(pglogicalSql.subscriberLag().text).toContain('pglogical.pglogical_gen_slot_name(current_database()::name, n.node_name')
    expect(spockRepairMode(true)).toEqual({ text: 'SELECT spock.repair_mode($1::boolean)', values: [true] })
    expect(spockSql.disableSubscription('sub_n1_n2')).toEqual({ text: 'SELECT spock.sub_disable($1::name, true)', values: ['sub_n1_n2'] })
    expect(spockSql.enableSubscription('sub_n1_n2')).toEqual({ text: 'SELECT spock.sub_enable($1::name, true)', values: ['sub_n1_n2'] })
  })

  it("names each subscription's apply worker the way Spock registers it (spock apply <db oid>:<sub id>)", () => {
    expect(spockSql.applyWorkers()).toEqual({
      text: `SELECT s.sub_name::text AS name, 'spock apply ' || d.oid || ':' || s.sub_id AS backend_type
  FROM spock.subscription s, pg_catalog.pg_database d WHERE d.datname = current_database()`,
      values: []
    })
  })
})

describe('pglogical SQL (golden; also run for real in pglogical-mesh.test.ts)', () => {
  it('subscribes with the default sets and no origin forwarding', () => {
    expect(pglogicalSql.ensureSubscription(subscription)[0]).toEqual({
      text: `SELECT pglogical.create_subscription(subscription_name := $1::name, provider_dsn := $2::text,
  replication_sets := ARRAY['default', 'default_insert_only', 'ddl_sql'], synchronize_structure := $3::boolean, synchronize_data := $4::boolean,
  forward_origins := '{}'::text[])
WHERE NOT EXISTS (SELECT 1 FROM pglogical.subscription WHERE sub_name = $1::name)`,
      values: ['sub_n1_n2', subscription.providerDsn, false, false]
    })
  })

  it('moves the local node to a new interface when its own DSN changed', () => {
    const [, create, addInterface, useInterface] = pglogicalSql.ensureNode({ nodeName: 'n1', dsn: 'host=b port=2 dbname=app' })
    expect(create?.values).toEqual(['n1', 'host=b port=2 dbname=app'])
    expect(addInterface?.text).toMatch(/^SELECT pglogical\.alter_node_add_interface\(n\.node_name, .*WHERE i\.if_dsn <> \$1::text/s)
    expect(useInterface?.text).toMatch(/^UPDATE pglogical\.local_node l SET node_local_interface = j\.if_id.*i\.if_dsn <> \$1::text/s)
    for (const statement of [addInterface, useInterface]) expect(statement?.values).toEqual(['host=b port=2 dbname=app'])
  })

  it('follows a provider whose DSN changed: a new interface for it, and the subscription switched to it', () => {
    const [, addInterface, switchInterface] = pglogicalSql.ensureSubscription(subscription)
    expect(addInterface?.text).toMatch(/^SELECT pglogical\.alter_node_add_interface\(n\.node_name, .*WHERE s\.sub_name = \$1::name AND i\.if_dsn <> \$2::text/s)
    expect(switchInterface?.text).toMatch(/^SELECT pglogical\.alter_subscription_interface\(s\.sub_name, .*WHERE s\.sub_name = \$1::name AND i\.if_dsn <> \$2::text$/s)
    for (const statement of [addInterface, switchInterface]) expect(statement?.values).toEqual(['sub_n1_n2', subscription.providerDsn])
  })

  it('passes every input as a parameter, never inside the SQL text', () => {
    const hostile = "x'); DROP TABLE t; --"
    const statements = [
      ...pglogicalSql.ensureNode({ nodeName: hostile, dsn: hostile }),
      ...pglogicalSql.ensureSubscription({ provider: hostile, subscriber: 'n2', providerDsn: hostile }),
      ...pglogicalSql.dropSubscription({ provider: hostile, subscriber: 'n2' }),
      pglogicalSql.slotsFor(hostile), pglogicalSql.replicateDdl(hostile),
      ...spockSql.ensureNode({ nodeName: hostile, dsn: hostile }),
      ...spockSql.ensureSubscription({ provider: hostile, subscriber: 'n2', providerDsn: hostile }),
      spockSql.slotsFor(hostile), spockSql.replicateDdl(hostile),
      terminateSlotUsers([hostile]), dropInactiveSlots([hostile]), dropSlot(hostile), slotConfirmed(hostile, hostile),
      ...pglogicalJoinSql.createJoinSets(hostile), pglogicalJoinSql.dropJoinSets(hostile), pglogicalJoinSql.subscribeForwarding(hostile, hostile, hostile),
      pglogicalJoinSql.waitSyncComplete(hostile), pglogicalJoinSql.subscriptionSlot(hostile), pglogicalJoinSql.slotReady(hostile),
      pglogicalJoinSql.dropSubscriptionNamed(hostile), pglogicalSql.providerSlot?.(hostile, hostile) ?? { text: '', values: [] }
    ]
    for (const statement of statements) expect(statement.text).not.toContain('DROP TABLE')
  })
})

describe('pglogical join protocol SQL (golden; run for real by test/quickstart.test.ts and test/databases.test.ts)', () => {
  it('makes the join sets on the source: keyed tables in <set>, the others in <set>_insert_only, idempotently', () => {
    const [create, createInsertOnly, addTables] = pglogicalJoinSql.createJoinSets('pgmesh_join_n3')
    expect(create).toEqual({
      text: `SELECT pglogical.create_replication_set($1::name)
     WHERE NOT EXISTS (SELECT 1 FROM pglogical.replication_set WHERE set_name = $1::name)`,
      values: ['pgmesh_join_n3']
    })
    expect(createInsertOnly?.text).toContain("create_replication_set(($1::text || '_insert_only')::name, true, false, false, true)")
    expect(addTables?.text).toContain("WHERE t.set_name IN ('default', 'default_insert_only')")
    expect(pglogicalJoinSql.dropJoinSets('pgmesh_join_n3').values).toEqual(['pgmesh_join_n3'])
  })

  it('subscribes the joining node to its source with a copy and origin forwarding, over the join sets', () => {
    expect(pglogicalJoinSql.subscribeForwarding('sub_n1_n3_init', 'host=a dbname=app', 'pgmesh_join_n3')).toEqual({
      text: `SELECT pglogical.create_subscription(subscription_name := $1::name, provider_dsn := $2::text,
                 replication_sets := ARRAY[$3::text, $3::text || '_insert_only'], synchronize_structure := true,
                 synchronize_data := true, forward_origins := '{all}')`,
      values: ['sub_n1_n3_init', 'host=a dbname=app', 'pgmesh_join_n3']
    })
    expect(pglogicalJoinSql.waitSyncComplete('sub_n1_n3_init')).toEqual({ text: 'SELECT pglogical.wait_for_subscription_sync_complete($1::name)', values: ['sub_n1_n3_init'] })
  })

  it('barriers on slot positions, and creates a promoted primary\'s slots for the other nodes by pglogical\'s own names', () => {
    expect(slotConfirmed('pgl_app_n1_sub_n1_n3', '0/16B3748')).toEqual({
      text: 'SELECT confirmed_flush_lsn >= $2::pg_lsn AS done, active FROM pg_replication_slots WHERE slot_name = $1',
      values: ['pgl_app_n1_sub_n1_n3', '0/16B3748']
    })
    expect(pglogicalSlots().text).toContain("plugin = 'pglogical_output' AND database = current_database()")
    expect(pglogicalSql.providerSlot?.('n1', 'n2')?.text).toContain("pglogical.pglogical_gen_slot_name(current_database()::name, $1::name, ('sub_' || $1 || '_' || $2)::name)")
    expect(spockSql.join).toBeUndefined()
    expect(spockSql.providerSlot).toBeUndefined()
  })
})
