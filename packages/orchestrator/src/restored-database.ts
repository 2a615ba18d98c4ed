import type { AdminConnect } from './instance-operations.js'
import { NO_ARCHIVING } from './pgbackrest.js'
import { renderSettingValue } from './postgres-config.js'

/** What `pgbackrest restore` writes into postgresql.auto.conf for the recovery; reset once it has ended. */
export const RECOVERY_SETTINGS = [
  'restore_command', 'recovery_target', 'recovery_target_time', 'recovery_target_xid', 'recovery_target_lsn', 'recovery_target_name',
  'recovery_target_action', 'recovery_target_timeline', 'recovery_target_inclusive'
] as const

function quoteIdent (name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/**
 * The settings a server restored in place runs with until its next ensure: it must not push its WAL into any
 * repository (its node's backup_config goes with the restore) nor wait for replicas that are cloned again only after
 * it. Both come back with the next ensure.
 */
export function restoredInPlaceSettings (applied: Readonly<Record<string, string>>): Map<string, string> {
  const settings = new Map(Object.entries(applied))
  settings.set('archive_command', renderSettingValue(NO_ARCHIVING))
  settings.set('synchronous_standby_names', renderSettingValue(''))
  return settings
}

/** The replication extensions a restored server must not load before it is adopted. */
const REPLICATION_LIBRARIES = new Set(['pglogical', 'spock'])

/**
 * The managed settings without the replication extensions' libraries: a server restored from a backup starts that
 * way until it is adopted, so the backup's subscriptions never start an apply worker (they would connect to the
 * source's peers and consume their slots, which may be live: a database created from another one's backup).
 */
export function withoutReplicationLibraries (settings: ReadonlyMap<string, string>): Map<string, string> {
  const out = new Map(settings)
  const raw = settings.get('shared_preload_libraries')
  if (raw === undefined) return out
  const libraries = raw.replace(/^'|'$/g, '').split(',').map(l => l.trim()).filter(l => l !== '' && !REPLICATION_LIBRARIES.has(l))
  out.set('shared_preload_libraries', `'${libraries.join(',')}'`)
  return out
}

/**
 * Makes a server restored from a pgBackRest backup this node's own, once its recovery has ended, while it runs
 * without the replication libraries: the recovery settings go, the backup's database is renamed to this database's
 * name (the anchor's source_database_name), and the replication state the backup brought along goes: the extension
 * (its node, another node's or this node's from before, and subscriptions whose slots are gone), pgmesh's DDL event
 * triggers (they read the extension's tables), logical slots, replication origins at old positions. The caller then
 * restarts it with its full settings; the reconciler's next ensure-replication creates the extension, the node and
 * the triggers again and replicates every table again.
 */
export async function adoptRestoredDatabase (admin: AdminConnect, sourceName: string, databaseName: string): Promise<void> {
  await admin('postgres', async client => {
    for (const name of RECOVERY_SETTINGS) await client.query(`ALTER SYSTEM RESET ${name}`)
    await client.query('SELECT pg_reload_conf()')
    if (sourceName === databaseName) return
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [databaseName])
    if (exists.rows.length > 0) return
    // Nothing but the control plane connects before it is adopted; its own pollers may, for a moment.
    for (let attempt = 0; ; attempt++) {
      await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [sourceName])
      try {
        await client.query(`ALTER DATABASE ${quoteIdent(sourceName)} RENAME TO ${quoteIdent(databaseName)}`)
        return
      } catch (err) {
        if ((err as { code?: string }).code !== '55006' || attempt >= 20) throw err
        await new Promise(resolve => setTimeout(resolve, 250))
      }
    }
  })
  await admin(databaseName, async client => {
    await client.query('BEGIN')
    try {
      await client.query("SET LOCAL pgmesh.replicate_ddl = 'off'")
      const triggers = (await client.query<{ name: string }>("SELECT evtname::text AS name FROM pg_event_trigger WHERE starts_with(evtname, 'pgmesh_')")).rows
      for (const t of triggers) await client.query(`DROP EVENT TRIGGER ${quoteIdent(t.name)}`)
      for (const extension of REPLICATION_LIBRARIES) await client.query(`DROP EXTENSION IF EXISTS ${extension} CASCADE`)
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    }
    await client.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT active")
    await client.query('SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin')
  })
}
