export type {
  DatabaseSetup, DatabaseUser, InstanceEvent, InstanceSpec, InstanceState, InstanceStatus, Orchestrator, SettingValue,
  SwarmInstanceOptions
} from './orchestrator.js'
export { ProcessOrchestrator, type ProcessOrchestratorOptions } from './process-orchestrator.js'
export {
  CONTROL_SESSION_OPTIONS, desiredSettings, renderHba, renderIdent, renderManagedConf, replicaSlotName, type ReplicationLibrary, SYSTEM_SUPERUSER
} from './postgres-config.js'
export { type ScriptsDone, setupDatabase } from './database-setup.js'
export { assertInstanceId } from './instance-store.js'
export { InstanceEvents } from './instance-events.js'
export { InstanceLocks } from './instance-locks.js'
export { reloadSettings } from './config-reload.js'
export { pickFreePort } from './ports.js'
export { describedParameters, newestPostgresVersion } from './binaries.js'
export { cachedAsync } from './cached-async.js'
export {
  type AdminTarget, basebackupArgs, dropReplicaSlot, nextStandbyOf, promoteServer, replicaSlotExists, serverRole, withAdminConnection
} from './standby.js'
export type { StandbyOf } from './postgres-config.js'
