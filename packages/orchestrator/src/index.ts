export type { InstanceEvent, InstanceStatus, Orchestrator } from './orchestrator.js'
export {
  CONTROL_SESSION_OPTIONS, desiredSettings, renderHba, renderIdent, renderManagedConf, type ReplicationLibrary, type StandbyOf
} from './postgres-config.js'
export { renderSettingValue } from './postgres-config.js'
export { type ScriptsDone, setupDatabase } from './database-setup.js'
export { assertInstanceId, type InstanceIdParts, isInstanceId, parseInstanceId } from './instance-id.js'
export { type InstanceRecord, InstanceRecords } from './instance-records.js'
export {
  type AdminConnect, applyConfigChange, assertInstanceSpec, changedSettings, type ConfigChange, followPrimary, promoteRecord,
  setupPrimaryDatabase, statusBase
} from './instance-operations.js'
export { InstanceEvents } from './instance-events.js'
export { InstanceLocks } from './instance-locks.js'
export { reloadSettings } from './config-reload.js'
export { isPortBindable, pickFreePort } from './ports.js'
export { describedParameters } from './server-parameters.js'
export { cachedAsync } from './cached-async.js'
export { ensureSuperuserPassword, scramVerifier, superuserPassfile, type SuperuserPassword } from './superuser.js'
export {
  type AdminTarget, basebackupArgs, dropReplicaSlot, nextStandbyOf, promoteServer, replicaSlotExists, serverRole, withAdminConnection
} from './standby.js'
export {
  archiveCommand, backupArgs, NO_ARCHIVING, pgbackrestArgs, type PgbackrestPaths, renderPgbackrestConf, renderRestoreConf, repositoryPath, restoreArgs, STANZA
} from './pgbackrest.js'
export { adoptRestoredDatabase, RECOVERY_SETTINGS, restoredInPlaceSettings, withoutReplicationLibraries } from './restored-database.js'
