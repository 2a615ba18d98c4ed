export { SwarmOrchestrator, type SwarmOrchestratorOptions } from './swarm-orchestrator.js'
export type { DockerComponent } from './swarm-docker.js'
