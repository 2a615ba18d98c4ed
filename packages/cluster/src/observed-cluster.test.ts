import { describe, expect, it } from 'vitest'
import type { ObservedInstance } from '@pgmesh/model'
import { ObservedCluster, type PeerReport } from './observed-cluster.js'

function instance (id: string, hostId: string, state: ObservedInstance['state'] = 'available'): ObservedInstance {
  return { id, database_id: 'db', node_name: 'n1', host_id: hostId, state, generation: 1, updated_at: '2026-11-24T00:00:00Z' }
}

/** A host's view: its own report (rebuilt on every call, as the reconciler does) and its peers' last heartbeats. */
function cluster (refreshMs = 100): { observed: ObservedCluster, own: ObservedInstance[], peers: Map<string, PeerReport>, ownBuilds: () => number } {
  const state = { own: [instance('a', 'h1')], peers: new Map<string, PeerReport>(), builds: 0 }
  const observed = new ObservedCluster({
    own: () => { state.builds++; return state.own.map(i => ({ ...i })) },
    peers: () => [...state.peers.values()],
    ownRefreshMs: refreshMs
  })
  return { observed, own: state.own, peers: state.peers, ownBuilds: () => state.builds }
}

function heartbeat (hostId: string, instances: ObservedInstance[]): PeerReport {
  return { hostId, report: { instances }, instances }
}

describe('ObservedCluster', () => {
  it('keeps its version while reports repeat, and moves it when one says something new', () => {
    const c = cluster()
    c.peers.set('h2', heartbeat('h2', [instance('b', 'h2')]))
    const first = c.observed.snapshot(0)
    expect(first.instances.map(i => i.id)).toEqual(['a', 'b'])
    expect(first.byId.get('b')?.host_id).toBe('h2')

    c.peers.set('h2', heartbeat('h2', [instance('b', 'h2')]))
    expect(c.observed.snapshot(200)).toBe(first)

    c.peers.set('h2', heartbeat('h2', [instance('b', 'h2', 'degraded')]))
    const changed = c.observed.snapshot(400)
    expect(changed.version).toBe(first.version + 1)
    expect(changed.byId.get('b')?.state).toBe('degraded')
  })

  it('drops the instances of a peer that is no longer reachable', () => {
    const c = cluster()
    c.peers.set('h2', heartbeat('h2', [instance('b', 'h2')]))
    const before = c.observed.snapshot(0)
    c.peers.delete('h2')
    const after = c.observed.snapshot(0)
    expect(after.version).toBeGreaterThan(before.version)
    expect(after.instances.map(i => i.id)).toEqual(['a'])
  })

  it('builds this host\'s own report at most once per refresh interval', () => {
    const c = cluster(100)
    c.observed.snapshot(1000)
    c.own[0] = instance('a', 'h1', 'failed')
    expect(c.observed.snapshot(1050).byId.get('a')?.state).toBe('available')
    expect(c.ownBuilds()).toBe(1)
    expect(c.observed.snapshot(1100).byId.get('a')?.state).toBe('failed')
    expect(c.ownBuilds()).toBe(2)
  })
})
