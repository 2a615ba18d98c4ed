export { type Eligibility, KeptLease, newer, LeaseVoter, Leases, monotonicNow, type LeaseOptions, type LeaseOutcome, type LeaseReply, type LeaseRequest, type LeaseTransport } from './lease.js'
export { LEASE_PROTOCOL, meshTransport, serveLeases } from './mesh-transport.js'
