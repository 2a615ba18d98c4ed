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
