/** What a host's health reads as, apart from reachability: `degraded` when a component it reports is unhealthy. */
export type HeardState = 'healthy' | 'degraded'

/**
 * Since when each host has been in the state this host sees it in, by this host's clock: the console's "since when".
 * A run of heartbeats with one state starts at the first heartbeat of the run; a gap longer than the unreachable
 * timeout ends it (the host was unreachable in between), and the unreachable state itself began when that timeout
 * ran out after the last heartbeat. Fed every heartbeat as it is recorded, so a change between two reads keeps its
 * real time instead of the time someone asked.
 */
export class HostStateClock {
  private readonly runs = new Map<string, { state: HeardState, since: number, lastAt: number }>()

  /** `startedAt`: when this host began listening (a host never heard from has been unknown since then). */
  constructor (private readonly unreachableAfterMs: () => number, readonly startedAt = Date.now()) {}

  heard (hostId: string, state: HeardState, at: number): void {
    const run = this.runs.get(hostId)
    if (run === undefined || run.state !== state || at - run.lastAt > this.unreachableAfterMs()) {
      this.runs.set(hostId, { state, since: at, lastAt: at })
    } else {
      run.lastAt = at
    }
  }

  /**
   * When the host entered `state`, the state a read derives now from its reachability and last report.
   * `lastHeardAt`: when its last heartbeat arrived. Undefined when the reports do not say (the read is ahead of them).
   */
  since (hostId: string, state: HeardState | 'unreachable' | 'unknown', lastHeardAt: number | undefined): number | undefined {
    if (state === 'unknown') return this.startedAt
    if (state === 'unreachable') return lastHeardAt === undefined ? undefined : lastHeardAt + this.unreachableAfterMs()
    const run = this.runs.get(hostId)
    return run?.state === state ? run.since : undefined
  }

  forget (hostId: string): void {
    this.runs.delete(hostId)
  }
}
