export { type Eligibility, KeptLease, newer, LeaseVoter, Leases, monotonicNow, RENEWALS_PER_LEASE, type LeaseOptions, type LeaseOutcome, type LeaseReply, type LeaseRequest, type LeaseTransport } from './lease.js'
export { LEASE_PROTOCOL, meshTransport, serveLeases } from './mesh-transport.js'
