/**
 * Serialises the operations on one instance (API calls and supervision alike), while different instances proceed
 * independently. Shared by the orchestrators.
 */
export class InstanceLocks {
  private readonly tails = new Map<string, Promise<void>>()

  async run<T> (instanceId: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(instanceId) ?? Promise.resolve()
    const result = previous.then(operation)
    const settled = result.then(() => undefined, () => undefined)
    this.tails.set(instanceId, settled)
    try {
      return await result
    } finally {
      if (this.tails.get(instanceId) === settled) this.tails.delete(instanceId)
    }
  }

  /** An operation on this instance is running or queued. */
  busy (instanceId: string): boolean {
    return this.tails.has(instanceId)
  }

  /** Resolves once every operation started so far has settled. */
  async idle (): Promise<void> {
    await Promise.all(this.tails.values())
  }
}
