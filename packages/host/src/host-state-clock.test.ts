// "Since when" a host has been in its state: the first heartbeat of a run, the timeout after the last one for
// unreachable, a new run after a gap or a change of the reported components' health.
import { describe, expect, it } from 'vitest'
import { HostStateClock } from './host-state-clock.js'

describe('HostStateClock', () => {
  it('dates healthy from the first heartbeat of the run, not from the latest one or from when it is read', () => {
    const clock = new HostStateClock(() => 4000, 500)
    expect(clock.since('host-2', 'unknown', undefined)).toBe(500)
    for (let at = 1000; at <= 10_000; at += 1000) clock.heard('host-2', 'healthy', at)
    expect(clock.since('host-2', 'healthy', 10_000)).toBe(1000)
  })

  it('dates unreachable from the timeout after the last heartbeat, and a return after the gap from its first heartbeat', () => {
    const clock = new HostStateClock(() => 4000, 0)
    clock.heard('host-2', 'healthy', 1000)
    clock.heard('host-2', 'healthy', 2000)
    expect(clock.since('host-2', 'unreachable', 2000)).toBe(6000)
    clock.heard('host-2', 'healthy', 20_000)
    clock.heard('host-2', 'healthy', 21_000)
    expect(clock.since('host-2', 'healthy', 21_000)).toBe(20_000)
  })

  it('starts a new run when the reported health changes, and says nothing for a state its heartbeats have not shown', () => {
    const clock = new HostStateClock(() => 4000, 0)
    clock.heard('host-2', 'healthy', 1000)
    clock.heard('host-2', 'degraded', 2000)
    clock.heard('host-2', 'degraded', 3000)
    expect(clock.since('host-2', 'degraded', 3000)).toBe(2000)
    expect(clock.since('host-2', 'healthy', 3000)).toBeUndefined()
    clock.heard('host-2', 'healthy', 4000)
    expect(clock.since('host-2', 'healthy', 4000)).toBe(4000)
    clock.forget('host-2')
    expect(clock.since('host-2', 'healthy', 4000)).toBeUndefined()
  })
})
