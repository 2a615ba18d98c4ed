import type { JoinSql } from './driver.js'

/** pglogical's join protocol (see JoinSql; membership.ts runs it). */
export const pglogicalJoinSql: JoinSql = {
  createJoinSets: set => [
    {
      text: `SELECT pglogical.create_replication_set($1::name)
     WHERE NOT EXISTS (SELECT 1 FROM pglogical.replication_set WHERE set_name = $1::name)`,
      values: [set]
    },
    {
      text: `SELECT pglogical.create_replication_set(($1::text || '_insert_only')::name, true, false, false, true)
     WHERE NOT EXISTS (SELECT 1 FROM pglogical.replication_set WHERE set_name = ($1::text || '_insert_only')::name)`,
      values: [set]
    },
    {
      text: `SELECT pglogical.replication_set_add_table(CASE WHEN t.set_name = 'default' THEN $1::name ELSE ($1::text || '_insert_only')::name END, t.relid)
     FROM pglogical.tables t
    WHERE t.set_name IN ('default', 'default_insert_only')
      AND NOT EXISTS (SELECT 1 FROM pglogical.tables u WHERE u.relid = t.relid AND u.set_name IN ($1::name, ($1::text || '_insert_only')::name))`,
      values: [set]
    }
  ],

  dropJoinSets: set => ({
    text: `SELECT pglogical.drop_replication_set(s.set_name)
  FROM pglogical.replication_set s WHERE s.set_name IN ($1::name, ($1::text || '_insert_only')::name)`,
    values: [set]
  }),

  subscribeForwarding: (name, providerDsn, set) => ({
    text: `SELECT pglogical.create_subscription(subscription_name := $1::name, provider_dsn := $2::text,
                 replication_sets := ARRAY[$3::text, $3::text || '_insert_only'], synchronize_structure := true,
                 synchronize_data := true, forward_origins := '{all}')`,
    values: [name, providerDsn, set]
  }),

  waitSyncComplete: name => ({ text: 'SELECT pglogical.wait_for_subscription_sync_complete($1::name)', values: [name] }),

  subscriptionSlot: name => ({ text: 'SELECT sub_slot_name::text AS slot FROM pglogical.subscription WHERE sub_name = $1', values: [name] }),

  slotReady: slot => ({ text: 'SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL', values: [slot] }),

  dropSubscriptionNamed: name => ({ text: 'SELECT pglogical.drop_subscription($1::name, true)', values: [name] })
}
