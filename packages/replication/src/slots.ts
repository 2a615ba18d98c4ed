import type { Sql } from './driver.js'

/** Ends the walsenders that hold these slots, so they can be dropped. */
export function terminateSlotUsers (slotNames: readonly string[]): Sql {
  return {
    text: `SELECT pg_catalog.pg_terminate_backend(active_pid) FROM pg_catalog.pg_replication_slots
WHERE slot_name = ANY($1::text[]) AND active_pid IS NOT NULL`,
    values: [slotNames]
  }
}

/** Drops those of the slots that are inactive; rows `{ slot_name }` name the dropped ones. */
export function dropInactiveSlots (slotNames: readonly string[]): Sql {
  return {
    text: `SELECT slot_name::text AS slot_name, pg_catalog.pg_drop_replication_slot(slot_name)
FROM pg_catalog.pg_replication_slots WHERE slot_name = ANY($1::text[]) AND NOT active`,
    values: [slotNames]
  }
}

/** Drops one slot, whoever holds it (run terminateSlotUsers first). */
export function dropSlot (slotName: string): Sql {
  return { text: 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', values: [slotName] }
}

/** Rows `{ slot_name }`: this database's pglogical slots (every subscriber's, the join's `_init` ones included). */
export function pglogicalSlots (): Sql {
  return { text: "SELECT slot_name::text AS slot_name FROM pg_replication_slots WHERE plugin = 'pglogical_output' AND database = current_database()", values: [] }
}

/** Rows `{ lsn }`: where this server's WAL is now. */
export const CURRENT_WAL_LSN: Sql = { text: 'SELECT pg_current_wal_lsn()::text AS lsn', values: [] }

/** Rows `{ done, active }`: whether the slot confirmed the position. */
export function slotConfirmed (slotName: string, lsn: string): Sql {
  return { text: 'SELECT confirmed_flush_lsn >= $2::pg_lsn AS done, active FROM pg_replication_slots WHERE slot_name = $1', values: [slotName, lsn] }
}

/** A small logical WAL message: an idle subscriber confirms only when something is decoded. */
export const BARRIER_MESSAGE: Sql = { text: "SELECT pg_logical_emit_message(true, 'pgmesh', 'barrier')", values: [] }
