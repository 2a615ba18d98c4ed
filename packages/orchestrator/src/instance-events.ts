import type { Logger } from 'pino'
import type { InstanceEvent } from './orchestrator.js'

/** The listeners of an orchestrator's instance events; a listener that throws is logged, never fatal. */
export class InstanceEvents {
  private readonly listeners = new Set<(event: InstanceEvent) => void>()

  constructor (private readonly log: Logger) {}

  /** Returns the function that unsubscribes. */
  on (listener: (event: InstanceEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  emit (event: InstanceEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch (err) {
        this.log.error({ err, event }, 'instance event listener failed')
      }
    }
  }
}
