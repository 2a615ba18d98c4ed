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
