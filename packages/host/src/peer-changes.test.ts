import type { Heartbeat } from '@pgmesh/mesh'
import type { HostObserved, ObservedInstance } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { PeerChanges } from './peer-changes.js'

function beat (hostId: string, seq: number, instances: ObservedInstance[], peers = 2): Heartbeat<HostObserved> {
  return {
    host_id: hostId, peer_id: `P-${hostId}`, boot_id: 'b', seq, sent_at: Date.now(),
    // What changes in every heartbeat without changing what the planner reads: connected peers, document heads.
    observed: { version: 'x', components: { mesh: { healthy: true, details: { connected_peers: peers } }, state: { healthy: true, details: { heads: seq } } }, instances }
  }
}

const instance = (state: ObservedInstance['state']): ObservedInstance => ({
  id: 'db1-n1-h2', database_id: 'db1', node_name: 'n1', host_id: 'host-2', state, generation: 1, updated_at: '2026-11-30T00:00:00Z'
})

describe('PeerChanges', () => {
  it('reports a peer\'s reachability changes and changed instance reports, not its unchanged heartbeats', () => {
    const changes: string[] = []
    const peers = new PeerChanges('host-1', (hostId, change) => { changes.push(`${hostId}:${change}`) })
    peers.reachability('host-2', 'healthy')
    for (let seq = 1; seq <= 20; seq++) peers.heartbeat(beat('host-2', seq, [instance('creating')], seq % 3))
    expect(changes).toEqual(['host-2:reachable'])
    peers.heartbeat(beat('host-2', 21, [instance('available')]))
    peers.heartbeat(beat('host-2', 22, [instance('available')]))
    expect(changes).toEqual(['host-2:reachable', 'host-2:report'])
    peers.reachability('host-2', 'unreachable')
    // Back from silence: `reachable` says it (the report is taken as new, unchanged or not), then changes again count.
    peers.heartbeat(beat('host-2', 23, [instance('available')]))
    peers.reachability('host-2', 'healthy')
    peers.heartbeat(beat('host-2', 24, [instance('degraded')]))
    expect(changes).toEqual(['host-2:reachable', 'host-2:report', 'host-2:unreachable', 'host-2:reachable', 'host-2:report'])
  })

  it('does not count replication lag, which moves with every write, as a change', () => {
    const changes: string[] = []
    const peers = new PeerChanges('host-1', (hostId, change) => { changes.push(`${hostId}:${change}`) })
    peers.reachability('host-2', 'healthy')
    const lagging = (bytes: number): ObservedInstance => ({ ...instance('available'), subscriber_lag: [{ subscriber_node: 'n2', lag_bytes: bytes }], lag_bytes: bytes } as unknown as ObservedInstance)
    for (let seq = 1; seq <= 10; seq++) peers.heartbeat(beat('host-2', seq, [lagging(seq * 100)]))
    expect(changes).toEqual(['host-2:reachable'])
    peers.heartbeat(beat('host-2', 11, [{ ...lagging(5), state: 'degraded' }]))
    expect(changes).toEqual(['host-2:reachable', 'host-2:report'])
  })

  it('ignores this host\'s own heartbeats', () => {
    const changes: string[] = []
    const peers = new PeerChanges('host-1', (hostId, change) => { changes.push(`${hostId}:${change}`) })
    peers.heartbeat(beat('host-1', 1, []))
    peers.heartbeat(beat('host-1', 2, [instance('available')]))
    peers.reachability('host-1', 'healthy')
    expect(changes).toEqual([])
  })
})
