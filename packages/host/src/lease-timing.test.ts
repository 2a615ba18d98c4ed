import { LeaseVoter, Leases, RENEWALS_PER_LEASE } from '@pgmesh/lease'
import { describe, expect, it } from 'vitest'
import { leaseOptions, longestGrantMs } from './lease-timing.js'

/** When a holder with these options, granted by voters capped at `cap`, is told to fence after a renewal at 0. */
async function fencesAt (holder: { durationMs: number, driftMs: number }, fenceMs: number, cap: number): Promise<number> {
  let clock = 10_000
  const now = (): number => clock
  const voters = [0, 1, 2].map(() => new LeaseVoter({ maxDurationMs: cap, now }))
  clock = 20_000
  const transport = { voters: () => ['b', 'c'], ask: async (voter: string, request: Parameters<LeaseVoter['answer']>[0]) => (voters[voter === 'b' ? 1 : 2] as LeaseVoter).answer(request) }
  const outcome = await new Leases(voters[0] as LeaseVoter, transport, { ...holder, now }).request('db/n1', 'primary', 1)
  expect(outcome.held).toBe(true)
  return outcome.validUntil - fenceMs - 20_000
}

describe('lease timing', () => {
  it('the default lease is 2.5 s, renewed in time to fence 625 ms before its end', async () => {
    const options = leaseOptions()
    expect(options).toEqual({ durationMs: 2500, driftMs: 125 })
    // Renewals come every 500 ms, and the fence point lies 1.75 s after the last one sent: a stall of up to 1.25 s,
    // half the lease, still lets the next renewal through.
    expect(options.durationMs / RENEWALS_PER_LEASE).toBe(500)
    expect(await fencesAt(options, 625, longestGrantMs())).toBe(1750)
  })

  it('voters still grant a host of the earlier version (4 s, renewing every second) its whole lease during a rolling upgrade', async () => {
    const earlier = { durationMs: 4000, driftMs: 200 }
    // Its fence point must come after its next renewal (1 s), or it would fence its primary between every two.
    expect(await fencesAt(earlier, 1500, longestGrantMs())).toBe(2300)
    // Had the upgraded voters capped grants at their own 2.5 s lease, it would come before:
    expect(await fencesAt(earlier, 1500, 2500)).toBe(800)
  })

  it('a longer --lease-ms is granted whole', () => {
    expect(longestGrantMs(6000)).toBe(6000)
    expect(longestGrantMs(2000)).toBe(4000)
  })
})
