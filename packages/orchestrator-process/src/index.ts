export { ProcessOrchestrator, type ProcessOrchestratorOptions } from './process-orchestrator.js'
export { newestPostgresVersion } from './binaries.js'
