import type { Action } from './types.js'

/** Peers come up in any order, so a first failure is usually transient: an instance is failed after three in a row. */
export const FAILED_AFTER = 3

export interface Failure {
  message: string
  /** Failures in a row. */
  attempts: number
  /** A terminal failure: not retried while the database stays at this generation. */
  terminalAt?: number
}

/** The last error of each instance's actions, how many times in a row they failed, and which cannot succeed. */
export class Failures {
  private readonly failures = new Map<string, Failure>()

  record (instanceId: string, message: string, terminalAt?: number): Failure {
    const failure: Failure = { message, attempts: (this.failures.get(instanceId)?.attempts ?? 0) + 1, ...(terminalAt === undefined ? {} : { terminalAt }) }
    this.failures.set(instanceId, failure)
    return failure
  }

  clear (instanceId: string): void {
    this.failures.delete(instanceId)
  }

  get (instanceId: string): Failure | undefined {
    return this.failures.get(instanceId)
  }

  /** Reported `failed`: three failures in a row, or one that cannot succeed. */
  failed (instanceId: string): boolean {
    const failure = this.failures.get(instanceId)
    return failure !== undefined && (failure.attempts >= FAILED_AFTER || failure.terminalAt !== undefined)
  }

  /** The instance's actions are not tried again: they failed for good at this generation of the database. */
  blocked (instanceId: string, generation: number | undefined): boolean {
    const at = this.failures.get(instanceId)?.terminalAt
    return at !== undefined && at === generation
  }

  entries (): IterableIterator<[string, Failure]> {
    return this.failures.entries()
  }

  /**
   * An instance whose actions failed (its runtime was down, say) and that runs again with nothing left to do for it
   * has recovered without a successful action of ours (Swarm restarted its container): its failure is history, and
   * keeping it would report the instance `failed` for good. Level-triggered like the rest: decided from the plan.
   */
  forgetSettled (actions: readonly Action[], running: (instanceId: string) => boolean): void {
    if (this.failures.size === 0) return
    const pending = new Set(actions.map(a => a.instanceId))
    for (const id of [...this.failures.keys()]) {
      if (!pending.has(id) && running(id)) this.failures.delete(id)
    }
  }
}
