import type { Heartbeat, Reachability } from '@pgmesh/mesh'
import type { HostObserved, ObservedInstance } from '@pgmesh/model'

/** Why a peer's part of what this host sees changed: it became reachable, went silent, or reported other instances. */
export type PeerChange = 'reachable' | 'unreachable' | 'report'

/**
 * Report fields that move with every write and that no pass reads (replication lag, a provider's view of its
 * subscribers): left out of the comparison, or a busy primary's host would ask every peer for a pass a second.
 */
const VOLATILE_FIELDS = ['subscriber_lag', 'lag_bytes'] as const

/** An instance report as compared: without its volatile fields. */
function planned (instance: ObservedInstance): Record<string, unknown> {
  const out: Record<string, unknown> = { ...instance }
  for (const field of VOLATILE_FIELDS) delete out[field]
  return out
}

/**
 * Turns every peer's heartbeats (one per peer per second) into the few events that change what the reconciler plans
 * from: a peer reachable again or gone silent, or a peer's instances reported differently. The instance reports
 * carry `updated_at` as of their last change, so an unchanged report is the same bytes (lag aside: VOLATILE_FIELDS);
 * the rest of a heartbeat (connected peers, document heads, versions) is not read by the planner.
 */
export class PeerChanges {
  /** Per reachable peer: its last instance report, serialized. */
  private readonly reported = new Map<string, string>()

  constructor (private readonly selfId: string, private readonly changed: (hostId: string, change: PeerChange) => void) {}

  heartbeat (beat: Heartbeat<HostObserved>): void {
    if (beat.host_id === this.selfId) return
    const report = JSON.stringify((beat.observed?.instances ?? []).map(planned))
    if (this.reported.get(beat.host_id) === report) return
    const first = !this.reported.has(beat.host_id)
    this.reported.set(beat.host_id, report)
    // A peer's first report comes with its `reachable`, which says the same.
    if (!first) this.changed(beat.host_id, 'report')
  }

  reachability (hostId: string, reachability: Reachability): void {
    if (hostId === this.selfId) return
    // A peer back from silence is planned from its new report whatever it says: forget the old one.
    if (reachability !== 'healthy') this.reported.delete(hostId)
    this.changed(hostId, reachability === 'healthy' ? 'reachable' : 'unreachable')
  }
}
