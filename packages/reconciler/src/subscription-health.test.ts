import { describe, expect, it } from 'vitest'
import { FAILING_REPORTED_AFTER_MS, RECOVERED_AFTER_MS, restartPause, STALL_MS, SubscriptionHealth, type SubscriptionPoll } from './subscription-health.js'

const T0 = Date.parse('2026-11-30T05:00:00Z')
const CHECK = 'new row for relation "t" violates check constraint "v_small" (apply INSERT from remote relation public.t …)'

/** One poll of n2's subscription from n1, `ms` after T0. */
function poll (ms: number, status: string, patch: Partial<SubscriptionPoll> = {}): SubscriptionPoll {
  return { rows: [{ provider_node: 'n1', name: 'sub_n1_n2', status }], errors: [], providerUp: () => true, now: T0 + ms, ...patch }
}
const failed = { errors: [{ subscription: 'sub_n1_n2', error: CHECK }] }

describe('subscription health', () => {
  it('reports a replicating subscription as it is, and restarts nothing', () => {
    const health = new SubscriptionHealth()
    expect(health.observe(poll(0, 'replicating'))).toEqual({ reports: [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'replicating' }], restart: [] })
  })

  it('reports an apply error at once (down, with the error), and failing since then once that has lasted', () => {
    const health = new SubscriptionHealth()
    expect(health.observe(poll(0, 'down', failed)).reports).toEqual([{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: CHECK }])
    expect(health.observe(poll(FAILING_REPORTED_AFTER_MS - 500, 'down')).reports[0]).not.toHaveProperty('failing_since')
    expect(health.observe(poll(FAILING_REPORTED_AFTER_MS, 'down')).reports).toEqual([
      { provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: CHECK, failing_since: '2026-11-30T05:00:00Z' }
    ])
  })

  it('keeps the error, and down, through a worker that is replicating for a moment before it fails again', () => {
    const health = new SubscriptionHealth()
    health.observe(poll(0, 'down', failed))
    expect(health.observe(poll(1000, 'replicating')).reports).toEqual([{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: CHECK }])
    health.observe(poll(2000, 'down', failed))
    // The replicating time starts again after each new error, and the failure goes on from its start.
    expect(health.observe(poll(3000, 'replicating')).reports[0]?.status).toBe('down')
    expect(health.observe(poll(3000 + RECOVERED_AFTER_MS - 1, 'replicating')).reports[0]?.status).toBe('down')
    expect(health.observe(poll(FAILING_REPORTED_AFTER_MS, 'down', failed)).reports[0]?.failing_since).toBe('2026-11-30T05:00:00Z')
  })

  it('drops the error once replicating for RECOVERED_AFTER_MS with no new error', () => {
    const health = new SubscriptionHealth()
    health.observe(poll(0, 'down', failed))
    health.observe(poll(1000, 'replicating'))
    expect(health.observe(poll(1000 + RECOVERED_AFTER_MS, 'replicating')).reports).toEqual([{ provider_node: 'n1', name: 'sub_n1_n2', status: 'replicating' }])
  })

  it('is not failing while its provider is not available (the error stays), and starts failing when the provider is back', () => {
    const health = new SubscriptionHealth()
    const providerDown = { providerUp: () => false }
    expect(health.observe(poll(0, 'down', { ...failed, ...providerDown }))).toEqual({
      reports: [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down', error: CHECK }], restart: []
    })
    expect(health.observe(poll(60_000, 'down', providerDown)).reports[0]).not.toHaveProperty('failing_since')
    health.observe(poll(61_000, 'down'))
    expect(health.observe(poll(61_000 + FAILING_REPORTED_AFTER_MS, 'down')).reports[0]?.failing_since).toBe('2026-11-30T05:01:01Z')
  })

  it('does not call a subscription down for a moment failing; stalled without an error, it is', () => {
    const health = new SubscriptionHealth()
    expect(health.observe(poll(0, 'down')).reports).toEqual([{ provider_node: 'n1', name: 'sub_n1_n2', status: 'down' }])
    health.observe(poll(STALL_MS, 'down'))
    expect(health.observe(poll(STALL_MS + FAILING_REPORTED_AFTER_MS, 'down')).reports[0]?.failing_since).toBe('2026-11-30T05:00:01Z')
  })

  it('does not report a failure shorter than FAILING_REPORTED_AFTER_MS (a provider restarting, a failover)', () => {
    const health = new SubscriptionHealth()
    const seen = [0, 1500, 5000, 8000].map(ms => health.observe(poll(ms, ms === 0 ? 'down' : 'replicating', ms === 0 ? { errors: [{ subscription: 'sub_n1_n2', error: 'data stream ended' }] } : {})).reports[0])
    expect(seen.map(r => r?.failing_since)).toEqual([undefined, undefined, undefined, undefined])
    expect(seen.map(r => r?.status)).toEqual(['down', 'down', 'replicating', 'replicating'])
  })

  it('restarts a subscription stalled for STALL_MS with its provider available, then backs off: 5 s doubling to 30 s', () => {
    expect([1, 2, 3, 4, 5, 6].map(restartPause)).toEqual([5000, 10_000, 20_000, 30_000, 30_000, 30_000])
    const health = new SubscriptionHealth()
    const restartsAt: number[] = []
    for (let ms = 0; ms <= 120_000; ms += 500) {
      if (health.observe(poll(ms, 'down', ms % 5000 === 0 ? failed : {})).restart.length > 0) restartsAt.push(ms)
    }
    expect(restartsAt).toEqual([1500, 6500, 16_500, 36_500, 66_500, 96_500])
  })

  it('never restarts while the provider is not available', () => {
    const health = new SubscriptionHealth()
    for (let ms = 0; ms <= 10_000; ms += 500) expect(health.observe(poll(ms, 'down', { providerUp: () => false })).restart).toEqual([])
  })

  it('starts the back-off over once the subscription is healthy again', () => {
    const health = new SubscriptionHealth()
    for (const ms of [0, 1500, 6500]) health.observe(poll(ms, 'down', failed))
    health.observe(poll(7000, 'replicating'))
    health.observe(poll(7000 + RECOVERED_AFTER_MS, 'replicating'))
    expect(health.observe(poll(10_000, 'down')).restart).toEqual([])
    expect(health.observe(poll(10_000 + STALL_MS, 'down')).restart).toEqual(['sub_n1_n2'])
  })

  it('asks whether the provider is available only about subscriptions that are down', () => {
    const asked: string[] = []
    const rows = [{ provider_node: 'n1', name: 'sub_n1_n2', status: 'replicating' }, { provider_node: 'n3', name: 'sub_n3_n2', status: 'down' }]
    new SubscriptionHealth().observe({ rows, errors: [], providerUp: node => { asked.push(node); return true }, now: T0 })
    expect(asked).toEqual(['n3'])
  })

  it('forgets subscriptions that are gone', () => {
    const health = new SubscriptionHealth()
    health.observe(poll(0, 'down', failed))
    health.observe({ ...poll(1000, 'down'), rows: [] })
    expect(health.observe(poll(2000, 'replicating')).reports).toEqual([{ provider_node: 'n1', name: 'sub_n1_n2', status: 'replicating' }])
  })
})
