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

  it('pushes new task log entries per task, sorted across hosts, and a task whose status changed, before the change', async () => {
    const state = new EventEmitter()
    const entries = new EventEmitter()
    const statuses = new Map([['t1', 'running'], ['t2', 'running']])
    const feed = new EventFeed({
      state: state as never,
      hostsSignature: () => '',
      observedSignature: () => '',
      taskStatuses: () => statuses,
      task: id => ({ task_id: id, status: statuses.get(id) }),
      taskLogEntries: entries as never
    }, { coalesceMs: 30, pollMs: 1000 })
    const got: string[] = []
    const off = feed.subscribe({
      changed: k => got.push(`change ${k.join(',')}`),
      task: t => got.push(`task ${JSON.stringify(t)}`),
      taskLog: e => got.push(`log ${e.task_id} ${e.entries.map(x => `${x.fields.host_id as string}:${x.message}`).join(' ')}`),
      ended: () => {}
    })
    // host-2's entry was written first (smaller UUIDv7) but arrives second, by gossip.
    entries.emit('entry', 't1', { id: '0002', timestamp: 't', message: 'second', host_id: 'host-1' })
    entries.emit('entry', 't1', { id: '0001', timestamp: 't', message: 'first', host_id: 'host-2', fields: { step: 1 } })
    statuses.set('t1', 'completed')
    statuses.set('t3', 'pending')
    state.emit('change', {})
    await sleep(80)
    expect(got).toEqual([
      'task {"task_id":"t1","status":"completed"}',
      'task {"task_id":"t3","status":"pending"}',
      'log t1 host-2:first host-1:second',
      'change document'
    ])
    // Unchanged statuses say nothing the next time; entries alone send no change.
    got.length = 0
    state.emit('change', {})
    entries.emit('entry', 't2', { id: '0003', timestamp: 't', message: 'third', host_id: 'host-3' })
    await sleep(80)
    expect(got).toEqual(['log t2 host-3:third', 'change document'])
    off()
    expect(entries.listenerCount('entry')).toBe(0)
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
