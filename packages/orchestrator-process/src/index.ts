export { ProcessOrchestrator, type ProcessOrchestratorOptions } from './process-orchestrator.js'
export { DEBIAN_POSTGRES_ROOT, installedPostgresVersions, newestPostgresVersion } from './binaries.js'
