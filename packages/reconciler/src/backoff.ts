import type { Action } from './types.js'

/**
 * Actions that failed (say, with the Docker daemon down) are not retried before a pause, so a host that cannot reach
 * its runtime does not retry on every pass (a peer's heartbeat asks for one every second, per peer): the pause
 * doubles from 0.5 s up to 5 s for work that brings an instance up, and from 1 s up to 30 s for removals and stops.
 */
export class Backoff {
  private readonly entries = new Map<string, { until: number, failures: number }>()

  constructor (private readonly now: () => number = Date.now) {}

  /** Whether the action may run now. */
  ready (action: Action): boolean {
    return (this.entries.get(key(action))?.until ?? 0) <= this.now()
  }

  succeeded (action: Action): void {
    this.entries.delete(key(action))
  }

  /** Records a failure; returns the pause before the action may run again. */
  failed (action: Action): number {
    const removal = action.kind === 'remove-instance' || action.kind === 'stop-instance'
    const failures = (this.entries.get(key(action))?.failures ?? 0) + 1
    const delayMs = removal ? Math.min(30_000, 1000 * 2 ** (failures - 1)) : Math.min(5_000, 500 * 2 ** (failures - 1))
    this.entries.set(key(action), { until: this.now() + delayMs, failures })
    return delayMs
  }
}

function key (action: Action): string {
  return `${action.kind}:${action.instanceId}`
}
