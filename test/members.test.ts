// Member authorization with real daemons (issue 16, finding 7): a peer that holds the cluster key but is not the
// host it speaks for. The rogue is a libp2p node built here with @pgmesh/mesh and the key from a member's data dir.
// Control-only daemons: what is tested is the mesh, not Postgres.
import { join } from 'node:path'
import { LEASE_PROTOCOL, type LeaseReply, type LeaseRequest } from '@pgmesh/lease'
import { ClusterKey, HEARTBEAT_TOPIC, type Heartbeat, Mesh, loadOrCreatePeerKey } from '@pgmesh/mesh'
import { instanceId } from '@pgmesh/model'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, hostStates, until, untilEveryHostKnowsEvery } from './helpers/cluster.js'

const logger = pino({ level: 'silent' })
const encoder = new TextEncoder()
const decoder = new TextDecoder()

async function startNode (cluster: TestCluster, keyFile: string, peerKeyFile: string): Promise<Mesh> {
  const mesh = new Mesh({
    privateKey: await loadOrCreatePeerKey(peerKeyFile),
    clusterKey: await ClusterKey.load(keyFile),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    logger
  })
  mesh.subscribe(HEARTBEAT_TOPIC, () => {})
  await mesh.start()
  return mesh
}

async function askLease (mesh: Mesh, voter: string, request: LeaseRequest): Promise<LeaseReply> {
  const channel = await mesh.open(voter, LEASE_PROTOCOL, AbortSignal.timeout(5000))
  await channel.write(encoder.encode(JSON.stringify(request)))
  const reply = JSON.parse(decoder.decode(await channel.read())) as LeaseReply
  await channel.close().catch(() => {})
  return reply
}

async function peerId (d: DaemonProcess): Promise<string> {
  return (await d.multiaddr()).split('/p2p/')[1] ?? ''
}

async function refusedCount (d: DaemonProcess, kind: string): Promise<number> {
  const text = (await d.get<string>('/metrics')).body
  const line = text.split('\n').find(l => l.startsWith(`pgmesh_refused_peer_messages_total{kind="${kind}"}`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

describe('members speak only for themselves', () => {
  let cluster: TestCluster
  let h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess
  let rogue: Mesh
  const others: Mesh[] = []

  beforeAll(async () => {
    cluster = await TestCluster.create('members', { reconcile: false })
    ;[h1, h2, h3] = await cluster.initAndJoin(3) as [DaemonProcess, DaemonProcess, DaemonProcess]
    await untilEveryHostKnowsEvery([h1, h2, h3])
    rogue = await startNode(cluster, join(h1.options.dataDir, 'cluster.key'), join(cluster.root, 'rogue.key'))
    for (const d of [h1, h2, h3]) await rogue.dial(await d.multiaddr())
  }, 60_000)

  afterAll(async () => {
    await rogue?.stop()
    for (const m of others) await m.stop()
    await cluster.destroy()
  })

  it('a forged heartbeat does not keep a stopped host healthy', async () => {
    // The rogue records host-2's real heartbeat to replay it, as an attacker on the mesh would.
    let captured: Heartbeat | undefined
    rogue.subscribe(HEARTBEAT_TOPIC, (data) => {
      const beat = JSON.parse(decoder.decode(data)) as Heartbeat
      if (beat.host_id === 'host-2') captured = beat
    })
    const real = await until('a heartbeat of host-2', () => captured, 20_000)
    await h2.stop('SIGKILL')
    let seq = real.seq + 1_000_000
    const forge = setInterval(() => {
      // Half claim the rogue's own peer id, half host-2's: the signer is what counts.
      const peer_id = seq % 2 === 0 ? real.peer_id : rogue.peerId
      const beat = { ...real, peer_id, seq: seq++, sent_at: Date.now() }
      void rogue.publish(HEARTBEAT_TOPIC, encoder.encode(JSON.stringify(beat))).catch(() => {})
    }, 250)
    try {
      // Unreachable after 4 s of silence; the forger keeps talking all along.
      for (const d of [h1, h3]) {
        await until(`host-2 unreachable on ${d.hostId}`, async () => (await hostStates(d))['host-2'] === 'unreachable', 20_000, 200)
      }
      await new Promise(resolve => setTimeout(resolve, 2000))
      for (const d of [h1, h3]) expect((await hostStates(d))['host-2']).toBe('unreachable')
      expect(await refusedCount(h1, 'heartbeat')).toBeGreaterThan(0)
    } finally {
      clearInterval(forge)
    }
  }, 60_000)

  it('forged lease traffic neither takes nor moves a lease', async () => {
    const voters = [await peerId(h1), await peerId(h3)]
    // host-2's own identity (its peer key; its daemon is stopped) holds the lease of node n1 for its instance.
    const host2 = await startNode(cluster, join(h1.options.dataDir, 'cluster.key'), join(h2.options.dataDir, 'peer.key'))
    others.push(host2)
    try {
      await forgeLeases(host2, voters)
    } finally {
      // Before host-2's daemon comes back with the same peer key.
      await host2.stop()
    }
  }, 60_000)

  async function forgeLeases (host2: Mesh, voters: string[]): Promise<void> {
    for (const d of [h1, h3]) await host2.dial(await d.multiaddr())
    const key = 'leasedb/n1'
    const holder = instanceId('leasedb', 'n1', 'host-2')
    const hold = async (): Promise<boolean[]> => await Promise.all(voters.map(async v => (await askLease(host2, v, { key, holder, term: 5, durationMs: 4000 })).granted))
    await until('host-2 to hold its lease', async () => (await hold()).every(Boolean), 20_000, 200)

    // The rogue releases host-2's lease and asks it for host-3's instance, and for an instance of no host.
    for (const v of voters) {
      expect((await askLease(rogue, v, { key, holder, term: 5, durationMs: 0, release: true })).granted).toBe(false)
      expect((await askLease(rogue, v, { key, holder: instanceId('leasedb', 'n1', 'host-3'), term: 6, durationMs: 4000 })).granted).toBe(false)
      expect((await askLease(rogue, v, { key: 'otherdb/n1', holder: instanceId('otherdb', 'n1', 'host-2'), term: 1, durationMs: 4000 })).granted).toBe(false)
    }
    // Not moved: host-2 renews at its term on every voter.
    expect(await hold()).toEqual([true, true])
    expect(await refusedCount(h1, 'lease')).toBeGreaterThanOrEqual(3)
  }

  it('a removed host that returns with its old data dir is refused by every member', async () => {
    // Only the members' own connections are counted from here on.
    await rogue.stop()
    await h2.start()
    for (const d of [h1, h2, h3]) {
      await until(`3 healthy hosts on ${d.hostId}`, async () => Object.values(await hostStates(d)).filter(s => s === 'healthy').length === 3, 30_000, 200)
    }
    await h3.stop('SIGKILL')
    const removed = await h1.request('DELETE', '/v1/hosts/host-3?force=true')
    expect(removed.status).toBeLessThan(300)
    await until('host-2 to see host-3 removed', async () => !('host-3' in await hostStates(h2)), 20_000, 200)
    await h3.start()
    // Give it the time to dial, gossip and beat many times over.
    await new Promise(resolve => setTimeout(resolve, 8000))
    for (const d of [h1, h2]) {
      expect(Object.keys(await hostStates(d)).sort()).toEqual(['host-1', 'host-2'])
      const peers = Number((await d.get<string>('/metrics')).body.split('\n').find(l => l.startsWith('pgmesh_mesh_peers '))?.split(' ')[1])
      expect(peers).toBe(1)
    }
    // The returned host hears from nobody: every member refuses its connections.
    const seen = await hostStates(h3)
    expect(seen['host-1']).not.toBe('healthy')
    expect(seen['host-2']).not.toBe('healthy')
  }, 90_000)
})
