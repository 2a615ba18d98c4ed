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
    let lastBeatAt = 0
    const beat = (): void => { lastBeatAt = Date.now() - t0; beats.receive(new TextEncoder().encode(JSON.stringify({ host_id: 'host-2', peer_id: 'P2', boot_id: 'b', seq: ++seq, sent_at: 0, observed: {} })), 'P2') }
    // Heartbeats every 50 ms for 300 ms (a loaded machine may stretch the gaps, never past the 400 ms bound): one `healthy`, no `unreachable` (each heartbeat re-arms the silence timer).
    for (let i = 0; i < 6; i++) {
      beat()
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect(events.map(e => e.reachability)).toEqual(['healthy'])
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

describe('Which heartbeats are relayed', () => {
  const encode = (b: Partial<Heartbeat>): Uint8Array => new TextEncoder().encode(JSON.stringify({ peer_id: b.host_id, boot_id: 'x', sent_at: 0, observed: {}, ...b }))

  it('lists the members it has no connection to or has not heard for two intervals, and relays the heartbeats of hosts a live host lists', async () => {
    const mesh = new Mesh({ privateKey: await generateKeyPair('Ed25519'), clusterKey: ClusterKey.generate(), listen: [], logger })
    const connected = new Set(['h2', 'h3', 'h4'])
    const beats = new Heartbeats(mesh, { hostId: 'h1', intervalMs: 100, members: () => ['h1', 'h2', 'h3', 'h4'], connectedPeers: () => connected, observe: () => ({}), logger })
    // Members just known are not listed for two intervals (a starting host hears nobody yet).
    expect(beats.unheard()).toEqual([])
    await new Promise(resolve => setTimeout(resolve, 250))
    expect(beats.unheard()).toEqual(['h2', 'h3', 'h4'])
    expect(beats.receive(encode({ host_id: 'h2', seq: 1, unheard: [] }), 'h2')).toBe(false)
    expect(beats.receive(encode({ host_id: 'h3', seq: 1, unheard: [] }), 'h3')).toBe(false)
    expect(beats.unheard()).toEqual(['h4'])
    // h4 cannot hear h3: h3's heartbeats are relayed from now on, h2's are not.
    expect(beats.receive(encode({ host_id: 'h4', seq: 1, unheard: ['h3'] }), 'h4')).toBe(false)
    expect(beats.receive(encode({ host_id: 'h3', seq: 2, unheard: [] }), 'h3')).toBe(true)
    expect(beats.receive(encode({ host_id: 'h2', seq: 2, unheard: [] }), 'h2')).toBe(false)
    expect(beats.stats.relayed).toBe(1)
    expect(beats.unheard()).toEqual([])
    // Once h4 hears h3 again, nobody needs h3's relayed.
    beats.receive(encode({ host_id: 'h4', seq: 2, unheard: [] }), 'h4')
    expect(beats.receive(encode({ host_id: 'h3', seq: 3, unheard: [] }), 'h3')).toBe(false)
    // Without a connection to h2, h2 is listed even while its heartbeats arrive (through relays).
    connected.delete('h2')
    expect(beats.unheard()).toEqual(['h2'])
    // Two intervals without any heartbeat: unheard again, unless this host itself stalled that long.
    await new Promise(resolve => setTimeout(resolve, 250))
    expect(beats.unheard()).toEqual(['h2', 'h3', 'h4'])
    expect(beats.unheard(Date.now(), 300)).toEqual(['h2'])
    // A malformed list is refused whole.
    expect(beats.receive(encode({ host_id: 'h2', seq: 9, unheard: [7] as unknown as string[] }), 'h2')).toBe(false)
    expect(beats.get('h2')?.heartbeat.seq).toBe(2)
    beats.stop()
  })

  it('on real meshes: a whole mesh relays no heartbeat; two hosts that lose their connection hear each other through the others', async () => {
    const clusterKey = ClusterKey.generate()
    const meshes: Mesh[] = []
    const beats: Heartbeats[] = []
    const hosts = ['host-1', 'host-2', 'host-3', 'host-4']
    try {
      for (const hostId of hosts) {
        const mesh = new Mesh({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], logger })
        meshes.push(mesh)
        beats.push(new Heartbeats(mesh, { hostId, intervalMs: 200, unreachableAfterMs: 1500, members: () => hosts, observe: () => ({}), logger }))
      }
      const [m1, , , m4] = meshes as [Mesh, Mesh, Mesh, Mesh]
      for (const m of meshes) await m.start()
      const targets = meshes.map(m => ({ peerId: m.peerId, addresses: m.addresses() }))
      const connect = (): void => { meshes.forEach((m, i) => { m.keepConnected(targets.slice(i + 1)) }) }
      const unseen = (): string[] => beats.flatMap((b, i) => hosts.filter(h => b.reachability(h) !== 'healthy').map(h => `host-${i + 1} sees ${h} ${b.reachability(h)}`))
      const settle = async (): Promise<void> => {
        const deadline = Date.now() + 20_000
        while ((unseen().length > 0 || beats.some(b => b.unheard().length > 0 && !b.unheard().every(h => h === 'host-1' || h === 'host-4'))) && Date.now() < deadline) {
          connect()
          await new Promise(resolve => setTimeout(resolve, 200))
        }
        expect(unseen()).toEqual([])
      }
      connect()
      for (const b of beats) b.start()
      await settle()
      // Everyone hears everyone straight: no copy of any heartbeat arrives twice anywhere.
      const duplicates = (): number => meshes.reduce((sum, m) => sum + (m.stats().wire.duplicatesReceived['/pgmesh/heartbeat/1'] ?? 0), 0)
      const received = (): number => beats.reduce((sum, b) => sum + b.stats.received, 0)
      await new Promise(resolve => setTimeout(resolve, 500))
      const [duplicates0, received0] = [duplicates(), received()]
      await new Promise(resolve => setTimeout(resolve, 2000))
      expect(received() - received0).toBeGreaterThanOrEqual(24)
      expect(duplicates() - duplicates0).toBe(0)

      // host-1 and host-4 lose their connection (and may not dial again).
      m1.deny(m4.peerId)
      m4.deny(m1.peerId)
      await new Promise(resolve => setTimeout(resolve, 500))
      await settle()
      expect(m1.isConnected(m4.peerId)).toBe(false)
      // Held past the unreachable bound: the relays keep them healthy to each other, and they say whom they miss.
      await new Promise(resolve => setTimeout(resolve, 2000))
      expect(unseen()).toEqual([])
      expect(beats[0]?.unheard()).toEqual(['host-4'])
      expect(beats[3]?.unheard()).toEqual(['host-1'])
      expect(beats[1]?.unheard()).toEqual([])
    } finally {
      for (const b of beats) b.stop()
      await Promise.all(meshes.map(async m => { await m.stop() }))
    }
  }, 60_000)
})
