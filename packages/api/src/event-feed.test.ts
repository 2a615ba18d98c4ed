// The feed behind /v1/events: coalescing, health and observed-state polling only while someone listens, the end at drain.
import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { type ChangeKind, EventFeed } from './event-feed.js'

function feedOver (signatures: { hosts: string, observed: string }, draining = { value: false }): { feed: EventFeed, state: EventEmitter } {
  const state = new EventEmitter()
  const feed = new EventFeed({
    state: state as never,
    hostsSignature: () => signatures.hosts,
    observedSignature: () => signatures.observed,
    isDraining: () => draining.value
  }, { coalesceMs: 30, pollMs: 20 })
  return { feed, state }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('EventFeed', () => {
  it('sends a burst of document changes as one event, to every subscriber', async () => {
    const { feed, state } = feedOver({ hosts: 'a', observed: '1' })
    const got: ChangeKind[][] = []
    const other: ChangeKind[][] = []
    const off1 = feed.subscribe({ changed: k => got.push(k), ended: () => {} })
    const off2 = feed.subscribe({ changed: k => other.push(k), ended: () => {} })
    for (let i = 0; i < 50; i++) state.emit('change', {})
    await sleep(80)
    expect(got).toEqual([['document']])
    expect(other).toEqual([['document']])
    off1(); off2()
  })

  it('reports health and observed-state changes it polls, and listens to nothing once the last subscriber leaves', async () => {
    const signatures = { hosts: 'host-3:healthy', observed: '1' }
    const { feed, state } = feedOver(signatures)
    const got: ChangeKind[][] = []
    const off = feed.subscribe({ changed: k => got.push(k), ended: () => {} })
    signatures.hosts = 'host-3:unreachable'
    signatures.observed = '2'
    await sleep(100)
    expect(got.flat().sort()).toEqual(['hosts', 'observed'])
    expect(state.listenerCount('change')).toBe(1)
    off()
    expect(state.listenerCount('change')).toBe(0)
    expect(feed.size).toBe(0)
  })

  it('ends every stream when the host drains', async () => {
    const draining = { value: false }
    const { feed, state } = feedOver({ hosts: 'a', observed: '1' }, draining)
    let ended = 0
    feed.subscribe({ changed: () => {}, ended: () => { ended++ } })
    feed.subscribe({ changed: () => {}, ended: () => { ended++ } })
    draining.value = true
    await sleep(60)
    expect(ended).toBe(2)
    expect(feed.size).toBe(0)
    expect(state.listenerCount('change')).toBe(0)
  })
})
