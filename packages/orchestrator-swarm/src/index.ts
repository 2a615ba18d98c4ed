export { SwarmOrchestrator, type SwarmOrchestratorOptions } from './swarm-orchestrator.js'
