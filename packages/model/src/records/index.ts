// Every record of the cluster document and of the hosts' heartbeats, with the pure rules over them.
export { type ApiRole, type ApiTokenRecord, type ClusterDoc, type ClusterRecord, DOCUMENT_FORMAT_HEADER, type HostRecord, type JoinTokenRecord, type RemovedPeer } from './cluster.js'
export { type BackupRequest, type NodeRestore, type DatabaseRecord, type DatabaseState, type EncodedSpec, type InstanceOperation, nodePrimary, type NodePrimary, type PrimaryChangeRequest } from './database.js'
export { ACTIVE_TASK_STATUSES, isTerminalTaskStatus, type Task, type TaskLog, type TaskLogEntry, type TaskScope, type TaskStatus, type TaskType, transitionTask } from './task.js'
export type { ComponentStatus, HostObserved, ObservedInstance, ObservedSubscription, PgVersion } from './observed.js'
export {
  type BackupRun, type DatabaseSetup, type DatabaseUser, type InstanceBackup, type InstanceRestore, formatDsn, type InstanceSpec, type InstanceState, type NodeSpec, replicaSlotName, type SettingValue,
  type SwarmInstanceOptions,
  type ExtraVolume
} from './instance.js'
export { REPLICATION_SCHEMA, SYSTEM_SUPERUSER } from './system-names.js'
export type { DocumentGeneration } from './cluster.js'
