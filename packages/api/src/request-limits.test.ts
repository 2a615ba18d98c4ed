import { afterEach, describe, expect, it } from 'vitest'
import { type ApiFixture, type CallResult, startApiFixture } from './api.fixture.js'
import { TokenBuckets } from './request-limits.js'

const spec = { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'] }] }
// In process there is no socket: the tests name their client in a header.
const byHeader = { clientIdentity: (c: { req: { header: (n: string) => string | undefined } }) => c.req.header('x-client') ?? 'a' }
const big = { perSecond: 1000, burst: 1000 }

function expectRefused (res: CallResult, status: number, name: string): void {
  expect(res.status, res.text).toBe(status)
  expect(res.json).toEqual({ name, message: expect.any(String) })
  expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
}

describe('TokenBuckets', () => {
  it('lets a burst through, then one request per refill, per client', () => {
    let now = 0
    const buckets = new TokenBuckets({ perSecond: 2, burst: 3 }, () => now)
    expect([buckets.take('a'), buckets.take('a'), buckets.take('a')]).toEqual([0, 0, 0])
    expect(buckets.take('a')).toBe(500)
    expect(buckets.take('b')).toBe(0)
    now = 499
    expect(buckets.take('a')).toBe(2)
    now = 500
    expect(buckets.take('a')).toBe(0)
    now = 10_000
    expect([buckets.take('a'), buckets.take('a'), buckets.take('a'), buckets.take('a') > 0]).toEqual([0, 0, 0, true])
  })
})

describe('API request limits', () => {
  let api: ApiFixture | undefined
  afterEach(async () => { await api?.stop(); api = undefined })

  it('answers a client over its write rate 429 with Retry-After, and still serves its reads and other clients', async () => {
    api = await startApiFixture({ clusterId: 'limits', limits: { writes: { perSecond: 0.5, burst: 2 }, reads: big, maxConcurrentWrites: 100 }, ...byHeader })
    for (let i = 0; i < 2; i++) expect((await api.call('POST', '/v1/databases', { id: `ok-${i}`, spec })).status).toBe(200)
    const refused = await api.call('POST', '/v1/databases', { id: 'over', spec })
    expectRefused(refused, 429, 'too_many_requests')
    expect(Number(refused.headers.get('retry-after'))).toBe(2)
    expect((await api.call('GET', '/v1/databases/over')).status).toBe(404)
    expect((await api.call('GET', '/v1/databases/ok-0')).status).toBe(200)
    expect((await api.call('GET', '/v1/version')).status).toBe(200)
    expect((await api.call('POST', '/v1/databases', { id: 'other', spec }, { 'x-client': 'b' })).status).toBe(200)
  })

  it('keeps a separate read budget, and never limits health', async () => {
    api = await startApiFixture({ clusterId: 'limits', limits: { writes: big, reads: { perSecond: 0.1, burst: 3 }, maxConcurrentWrites: 100 }, ...byHeader })
    // The fixture's cluster init was the first read.
    expect((await api.call('GET', '/v1/databases')).status).toBe(200)
    expect((await api.call('GET', '/v1/hosts')).status).toBe(200)
    expectRefused(await api.call('GET', '/v1/databases'), 429, 'too_many_requests')
    for (let i = 0; i < 20; i++) {
      expect((await api.call('GET', '/v1/version')).status).toBe(200)
      expect((await api.call('GET', '/livez')).status).toBe(200)
    }
    // Reads spent nothing of the write budget.
    expect((await api.call('POST', '/v1/databases', { id: 'w', spec })).status).toBe(200)
  })

  it('answers writes beyond the bound in flight 503 server_busy with Retry-After; every accepted write is kept', async () => {
    api = await startApiFixture({ clusterId: 'limits', limits: { writes: big, reads: big, maxConcurrentWrites: 3 }, ...byHeader })
    const fixture = api
    const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => ({ id: `burst-${i}`, res: await fixture.call('POST', '/v1/databases', { id: `burst-${i}`, spec }) })))
    const accepted = results.filter(r => r.res.status === 200)
    const busy = results.filter(r => r.res.status !== 200)
    expect(accepted.length).toBeGreaterThanOrEqual(3)
    expect(busy.length).toBeGreaterThan(0)
    for (const r of busy) expectRefused(r.res, 503, 'server_busy')
    for (const r of accepted) expect((await api.call('GET', `/v1/databases/${r.id}`)).status).toBe(200)
    for (const r of busy) expect((await api.call('GET', `/v1/databases/${r.id}`)).status).toBe(404)
    // Once the burst is over, writes go through again.
    expect((await api.call('POST', '/v1/databases', { id: 'after', spec })).status).toBe(200)
  })
})
