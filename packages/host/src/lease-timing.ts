/** Default lease of a node's primary; a failover waits it out (packages/lease/README.md, Timings: why 2.5 s). */
const DEFAULT_LEASE_MS = 2500
/** Clock-rate drift allowance between hosts over one lease (125 ms of the default 2.5 s). */
const LEASE_DRIFT = 0.05
/** The default lease of pgmesh before 2.5 s. */
const EARLIER_DEFAULT_LEASE_MS = 4000

/**
 * The longest grant this host's voter gives: its own lease, but never less than the earlier default of 4 s. A holder
 * counts the shortest grant it got; a host of the earlier version (4 s, renewing every second, fencing 1.5 s before
 * its end) counting 2.5 s grants would fence its primary between two renewals, every second, during a rolling
 * upgrade. A voter's quiet period after a restart is as long (a restarted voter may have granted that much).
 */
export function longestGrantMs (leaseMs = DEFAULT_LEASE_MS): number {
  return Math.max(leaseMs, EARLIER_DEFAULT_LEASE_MS)
}

/** This host's lease options: what its primaries ask for, and the drift they subtract. */
export function leaseOptions (leaseMs = DEFAULT_LEASE_MS): { durationMs: number, driftMs: number } {
  return { durationMs: leaseMs, driftMs: Math.ceil(leaseMs * LEASE_DRIFT) }
}
