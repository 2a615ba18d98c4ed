import { generateKeyPair } from '@libp2p/crypto/keys'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { Heartbeats } from './heartbeat.js'
import { ClusterKey } from './keys.js'
import { Mesh } from './mesh.js'

const logger = pino({ level: 'silent' })
// Past the cliff: with gossipsub's default IP colocation penalty, 15 peers on one address score -5·(15-10)² = -125,
// below the graylist (-80), and their heartbeats are dropped. scripts/bench/hosts.ts runs 25 and 50 real daemons.
const HOSTS = 16

describe(`${HOSTS} hosts on one address (loopback), in one process`, () => {
  const meshes: Mesh[] = []
  const beats: Heartbeats[] = []
  afterAll(async () => {
    for (const b of beats) b.stop()
    await Promise.all(meshes.map(async m => { await m.stop() }))
  })

  it('all see each other healthy by heartbeat, and keep doing so', async () => {
    const clusterKey = ClusterKey.generate()
    for (let i = 1; i <= HOSTS; i++) {
      const mesh = new Mesh({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], logger })
      meshes.push(mesh)
      beats.push(new Heartbeats(mesh, { hostId: `host-${i}`, observe: () => ({}), logger }))
    }
    for (const m of meshes) await m.start()
    const targets = meshes.map(m => ({ peerId: m.peerId, addresses: m.addresses() }))
    // Each pair dialed once (the host's keeper redials from both sides; one side is enough to connect).
    meshes.forEach((m, i) => { m.keepConnected(targets.slice(i + 1)) })
    for (const b of beats) b.start()

    const unseen = (): string[] => beats.flatMap((b, i) => beats.map((_, j) => `host-${j + 1}`)
      .filter(host => b.reachability(host) !== 'healthy').map(host => `host-${i + 1} sees ${host} ${b.reachability(host)}`))
    const deadline = Date.now() + 40_000
    while (unseen().length > 0 && Date.now() < deadline) {
      meshes.forEach((m, i) => { m.keepConnected(targets.slice(i + 1)) })
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    expect(unseen()).toEqual([])
    // gossipsub recomputes scores every second and a host is unreachable after 4 s of silence.
    await new Promise(resolve => setTimeout(resolve, 6000))
    expect(unseen()).toEqual([])
  }, 60_000)
})
