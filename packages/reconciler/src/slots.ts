import { createHash } from 'node:crypto'
import type pg from 'pg'

/**
 * Waits until a logical slot on this server has confirmed everything written here up to now. An idle subscriber
 * confirms only when something is decoded, so each poll writes a small WAL message to move it along.
 */
export async function waitConfirmed (conn: pg.Client, slot: string, what: string, timeoutMs = 120_000): Promise<void> {
  const target = (await conn.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]?.lsn as string
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const row = (await conn.query({ text: 'SELECT confirmed_flush_lsn >= $2::pg_lsn AS done, active FROM pg_replication_slots WHERE slot_name = $1', values: [slot, target] })).rows[0]
    if (row?.done === true) return
    if (Date.now() > deadline) throw new Error(`${what}: slot ${slot} has not confirmed ${target} (active: ${String(row?.active)})`)
    await conn.query("SELECT pg_logical_emit_message(true, 'pgmesh', 'barrier')")
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

/**
 * On a subscriber (pglogical): points the subscription to `provider` at `dsn` when it still uses another interface,
 * as after a switchover or failover of the provider node. The new primary holds a slot of the same name, created
 * when it was promoted, so the subscription resumes from its replication origin's progress.
 */
export async function followProvider (conn: pg.Client, subscription: string, provider: string, dsn: string): Promise<boolean> {
  const row = (await conn.query({
    text: `SELECT i.if_dsn::text AS dsn, s.sub_origin AS node_id FROM pglogical.subscription s
             JOIN pglogical.node_interface i ON i.if_id = s.sub_origin_if WHERE s.sub_name = $1`,
    values: [subscription]
  })).rows[0] as { dsn: string, node_id: number } | undefined
  if (row === undefined || row.dsn === dsn) return false
  const name = `if_${createHash('sha256').update(dsn).digest('hex').slice(0, 12)}`
  await conn.query({
    text: `SELECT pglogical.alter_node_add_interface($1::name, $2::name, $3::text)
            WHERE NOT EXISTS (SELECT 1 FROM pglogical.node_interface WHERE if_nodeid = $4 AND if_name = $2::name)`,
    values: [provider, name, dsn, row.node_id]
  })
  await conn.query({ text: 'SELECT pglogical.alter_subscription_interface($1::name, $2::name)', values: [subscription, name] })
  return true
}
