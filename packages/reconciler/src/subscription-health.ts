import { type ObservedSubscription, rfc3339 } from '@pgmesh/model'
import type { SubscriptionStatus } from '@pgmesh/replication'

/** How long a subscription may be down, with its provider available, before it is restarted. */
export const STALL_MS = 1500
/** The pause after the first restart of a subscription that stays down; it doubles per restart up to the cap. */
export const RESTART_PAUSE_MS = 5000
export const RESTART_PAUSE_CAP_MS = 30_000
/** Replicating this long, with no new error, and a subscription counts as healthy again (its error is dropped). */
export const RECOVERED_AFTER_MS = 2000
/**
 * A failure is reported (`failing_since`, which makes the instance degraded and starts the task's bound) once it has
 * lasted this long: a provider's restart or a failover interrupts replication for a few seconds, with errors, and
 * that is not a degraded database. The time reported is still when the failure began.
 */
export const FAILING_REPORTED_AFTER_MS = 10_000

/** The pause before the next restart, after `restarts` restarts that did not help: 5 s, 10 s, 20 s, then 30 s. */
export function restartPause (restarts: number): number {
  return Math.min(RESTART_PAUSE_CAP_MS, RESTART_PAUSE_MS * 2 ** Math.max(0, restarts - 1))
}

export interface SubscriptionPoll {
  rows: readonly SubscriptionStatus[]
  /** Apply-worker errors logged since the previous poll, oldest first. */
  errors: ReadonlyArray<{ subscription: string, error: string }>
  /** Whether the provider node's primary is reported available (asked only for subscriptions that are down). */
  providerUp: (providerNode: string) => boolean
  now: number
}

interface Tracked {
  error?: string
  downSince?: number
  failingSince?: number
  replicatingSince?: number
  restarts: number
  nextRestartAt: number
}

/**
 * What one local primary's subscriptions report, and which of them to restart; pure, the time comes with each poll.
 *
 * A worker that fails on a change it cannot apply runs for milliseconds before it fails again, so a poll can catch
 * it `replicating`; the last error is therefore kept, and the subscription reported `down`, until it has been
 * replicating for RECOVERED_AFTER_MS with no new error. Down with an error (or stalled) while its provider is
 * available for FAILING_REPORTED_AFTER_MS, it reports `failing_since` (what bounds a task waiting for it). A subscription down for STALL_MS with its provider
 * available is restarted (pglogical retries a failed worker after 5 s once, then only when its manager wakes, up to
 * 3 minutes later); restarts that do not help back off, 5 s doubling to 30 s, until it is healthy again.
 */
export class SubscriptionHealth {
  private readonly tracked = new Map<string, Tracked>()

  observe (poll: SubscriptionPoll): { reports: ObservedSubscription[], restart: string[] } {
    const { now } = poll
    for (const name of this.tracked.keys()) if (!poll.rows.some(r => r.name === name)) this.tracked.delete(name)
    const reports: ObservedSubscription[] = []
    const restart: string[] = []
    for (const row of poll.rows) {
      const t = this.tracked.get(row.name) ?? { restarts: 0, nextRestartAt: 0 }
      this.tracked.set(row.name, t)
      const latest = poll.errors.filter(e => e.subscription === row.name).at(-1)
      if (latest !== undefined) t.error = latest.error
      if (row.status === 'replicating' && latest === undefined) t.replicatingSince ??= now
      else t.replicatingSince = undefined
      if (t.replicatingSince !== undefined && now - t.replicatingSince >= RECOVERED_AFTER_MS) {
        t.error = undefined
        t.restarts = 0
        t.nextRestartAt = 0
      }
      if (row.status === 'down') t.downSince ??= now
      else t.downSince = undefined
      const down = row.status === 'down' || t.error !== undefined
      // Asked only about subscriptions that are down: answering means looking through every host's report.
      const providerUp = down && poll.providerUp(row.provider_node)
      // Down for a moment (a worker starting) is not failing; down with an error, or stalled, is.
      const failing = down && providerUp && (t.error !== undefined || (t.downSince !== undefined && now - t.downSince >= STALL_MS))
      if (failing) t.failingSince ??= now
      else t.failingSince = undefined
      if (t.downSince !== undefined && providerUp && now - t.downSince >= STALL_MS && now >= t.nextRestartAt) {
        t.restarts += 1
        t.nextRestartAt = now + restartPause(t.restarts)
        restart.push(row.name)
      }
      reports.push({
        provider_node: row.provider_node,
        name: row.name,
        status: down ? 'down' : row.status,
        ...(t.error === undefined ? {} : { error: t.error }),
        ...(t.failingSince === undefined || now - t.failingSince < FAILING_REPORTED_AFTER_MS ? {} : { failing_since: rfc3339(t.failingSince) })
      })
    }
    return { reports, restart }
  }
}
