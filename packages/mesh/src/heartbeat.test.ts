import { generateKeyPair } from '@libp2p/crypto/keys'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { type Heartbeat, Heartbeats } from './heartbeat.js'
import { ClusterKey } from './keys.js'
import { Mesh } from './mesh.js'

const logger = pino({ level: 'silent' })

async function until (check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
}

describe('Heartbeats from peers', () => {
  it('ignores a heartbeat whose signer is not the peer bound to its host id', async () => {
    const mesh = new Mesh({ privateKey: await generateKeyPair('Ed25519'), clusterKey: ClusterKey.generate(), listen: [], logger })
    // host-2 is bound to peer P2 (what the host's member directory says from the document).
    const bound: Record<string, string> = { P2: 'host-2', P3: 'host-3' }
    const refused: string[] = []
    const beats = new Heartbeats(mesh, {
      hostId: 'host-1',
      observe: () => ({}),
      authorizeSender: (peer, hostId) => bound[peer] === hostId,
      onRefused: (peer, hostId) => { refused.push(`${peer}:${hostId}`) },
      logger
    })
    const encode = (b: Partial<Heartbeat>): Uint8Array => new TextEncoder().encode(JSON.stringify({ boot_id: 'x', sent_at: 0, observed: {}, ...b }))
    // P3 forges host-2's heartbeat, with and without claiming host-2's peer id; an unsigned one has no sender.
    beats.receive(encode({ host_id: 'host-2', peer_id: 'P3', seq: 1 }), 'P3')
    beats.receive(encode({ host_id: 'host-2', peer_id: 'P2', seq: 2 }), 'P3')
    beats.receive(encode({ host_id: 'host-2', peer_id: 'P2', seq: 3 }), '')
    expect(beats.reachability('host-2')).toBe('unknown')
    expect(refused).toEqual(['P3:host-2', 'P3:host-2', ':host-2'])
    beats.receive(encode({ host_id: 'host-2', peer_id: 'P2', seq: 1 }), 'P2')
    expect(beats.reachability('host-2')).toBe('healthy')
    expect(beats.get('host-2')?.heartbeat.seq).toBe(1)
  })
})

describe('Reachability changes', () => {
  it('says healthy on a host\'s first heartbeat and its first after a silence, and unreachable when the silence begins, once each', async () => {
    const mesh = new Mesh({ privateKey: await generateKeyPair('Ed25519'), clusterKey: ClusterKey.generate(), listen: [], logger })
    const beats = new Heartbeats(mesh, { hostId: 'host-1', unreachableAfterMs: 400, observe: () => ({}), logger })
    const events: Array<{ host: string, reachability: string, at: number }> = []
    const t0 = Date.now()
    beats.on('reachability', (host, reachability) => { events.push({ host, reachability, at: Date.now() - t0 }) })
    let seq = 0
    const beat = (): void => { beats.receive(new TextEncoder().encode(JSON.stringify({ host_id: 'host-2', peer_id: 'P2', boot_id: 'b', seq: ++seq, sent_at: 0, observed: {} })), 'P2') }
    // Heartbeats every 50 ms for 300 ms (a loaded machine may stretch the gaps, never past the 400 ms bound): one `healthy`, no `unreachable` (each heartbeat re-arms the silence timer).
    for (let i = 0; i < 6; i++) {
      beat()
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect(events.map(e => e.reachability)).toEqual(['healthy'])
    const lastBeatAt = Date.now() - t0 - 50
    await until(() => events.length === 2, 2000)
    expect(events.map(e => e.reachability)).toEqual(['healthy', 'unreachable'])
    expect(beats.reachability('host-2')).toBe('unreachable')
    // Told when the silence passed the bound, not at some later heartbeat: 400 ms after the last one, plus timer slack
    // (a loaded machine's).
    const silentFor = (events[1]?.at ?? Number.NaN) - lastBeatAt
    expect(silentFor).toBeGreaterThanOrEqual(400)
    expect(silentFor).toBeLessThan(700)
    beat()
    expect(events.map(e => e.reachability)).toEqual(['healthy', 'unreachable', 'healthy'])
    beats.stop()
  })
})
