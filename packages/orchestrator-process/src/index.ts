export type {
  DatabaseSetup, DatabaseUser, InstanceEvent, InstanceSpec, InstanceState, InstanceStatus, Orchestrator, SettingValue
} from './orchestrator.js'
export { ProcessOrchestrator, type ProcessOrchestratorOptions } from './process-orchestrator.js'
export { SYSTEM_SUPERUSER, replicaSlotName } from './postgres-config.js'
