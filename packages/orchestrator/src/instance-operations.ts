import { type DatabaseSetup, type InstanceSpec, InvalidInputError, SYSTEM_SUPERUSER } from '@pgmesh/model'
import type pg from 'pg'
import type { Logger } from 'pino'
import { reloadSettings } from './config-reload.js'
import { setupDatabase } from './database-setup.js'
import { assertInstanceId } from './instance-id.js'
import type { InstanceRecord } from './instance-records.js'
import type { InstanceStatus } from './orchestrator.js'
import type { StandbyOf } from './postgres-config.js'
import { dropReplicaSlot, nextStandbyOf, promoteServer } from './standby.js'

/** Runs `work` on an admin connection (see withAdminConnection) to one database of an instance. */
export type AdminConnect = <T>(database: string, work: (client: pg.Client) => Promise<T>) => Promise<T>

/** What every ensureInstance checks before anything else: the id and the port. */
export function assertInstanceSpec (spec: Pick<InstanceSpec, 'instanceId' | 'port'>): void {
  assertInstanceId(spec.instanceId)
  if (!Number.isInteger(spec.port) || spec.port < 0 || spec.port > 65535) throw new InvalidInputError(`invalid port ${spec.port}`)
}

/** Sets whom the instance streams from after this ensureInstance (see nextStandbyOf) and returns it. */
export function followPrimary (
  record: InstanceRecord, spec: Pick<InstanceSpec, 'instanceId' | 'primary'>, isNew: boolean, log: Logger
): StandbyOf | undefined {
  const standbyOf = nextStandbyOf(spec, isNew, record.standbyOf, log)
  if (standbyOf === undefined) delete record.standbyOf
  else record.standbyOf = standbyOf
  return standbyOf
}

/** The settings whose rendered value differs between what was applied and `settings` (added and removed ones too). */
export function changedSettings (applied: Record<string, string>, settings: ReadonlyMap<string, string>): string[] {
  const names = new Set([...Object.keys(applied), ...settings.keys()])
  return [...names].filter(name => applied[name] !== settings.get(name))
}

/** What a config write changed: settings by name, and whether pg_hba.conf or pg_ident.conf did. */
export interface ConfigChange { settings: string[], auth: boolean }

/**
 * Reload, or `restart` when a changed setting needs it (see reloadSettings); nothing when nothing changed. With
 * `deferRestart` it only reloads, and returns the settings that wait for a restart.
 */
export async function applyConfigChange (
  instanceId: string, change: ConfigChange, connect: AdminConnect, restart: () => Promise<void>, log: Logger, deferRestart = false
): Promise<string[]> {
  if (change.settings.length === 0 && !change.auth) return []
  const needsRestart = await connect('postgres', async client => await reloadSettings(client, change.settings))
  if (needsRestart.length > 0 && deferRestart) {
    log.info({ instanceId, settings: needsRestart }, 'reloaded configuration; the settings that need a restart wait for it')
    return needsRestart
  }
  if (needsRestart.length > 0) {
    log.info({ instanceId, settings: needsRestart }, 'restarting for settings that need it')
    await restart()
  } else {
    log.info({ instanceId, settings: change.settings, auth: change.auth }, 'reloaded configuration')
  }
  return []
}

/**
 * pg_promote, then the record forgets its primary (a promoted instance is never re-cloned or demoted) and is saved.
 * primary_conninfo stays in the config until the next ensureInstance rewrites it; a primary ignores it. The slot this
 * instance streamed from on the former primary is dropped in the background: after a failover the former primary's
 * host may take seconds to fail the connection (a dead machine answers nothing), and the caller keeps the new
 * primary read-only until this returns.
 */
export async function promoteRecord<R extends InstanceRecord> (
  record: R, connect: AdminConnect, save: (record: R) => Promise<void>, formerPrimarySlot: { log: Logger, password: string | undefined }
): Promise<void> {
  const formerPrimary = record.standbyOf
  await connect('postgres', promoteServer)
  delete record.standbyOf
  await save(record)
  if (formerPrimary !== undefined) void dropReplicaSlot(formerPrimary, formerPrimarySlot.log, formerPrimarySlot.password)
}

/** A primary's users, database and run-once scripts (setupDatabase), saving each script's completion in the record. */
export async function setupPrimaryDatabase<R extends InstanceRecord> (
  record: R, setup: DatabaseSetup, connect: AdminConnect, save: (record: R) => Promise<void>
): Promise<void> {
  await setupDatabase(connect, setup, record.scriptsDone, async script => {
    record.scriptsDone[script] = true
    await save(record)
  })
}

/** What a status says of any instance, running or not: the control plane connects over the socket in `socketDir`. */
export function statusBase (record: InstanceRecord, socketDir: string): Pick<InstanceStatus, 'instanceId' | 'port' | 'postgresVersion' | 'admin'> {
  return {
    instanceId: record.instanceId,
    port: record.port,
    postgresVersion: String(record.postgresMajor),
    admin: { host: socketDir, port: record.port, user: SYSTEM_SUPERUSER }
  }
}
