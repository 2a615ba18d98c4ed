export { type DockerComponent, SwarmOrchestrator, type SwarmOrchestratorOptions } from './swarm-orchestrator.js'
