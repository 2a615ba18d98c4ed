import { generateKeyPair } from '@libp2p/crypto/keys'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { ClusterKey } from './keys.js'
import { Mesh } from './mesh.js'

const logger = pino({ level: 'silent' })

describe('gossip accounting', () => {
  const meshes: Mesh[] = []
  afterAll(async () => { await Promise.all(meshes.map(async m => { await m.stop() })) })

  it('counts each topic\'s messages published and delivered, and gossipsub\'s RPCs on the wire', async () => {
    const clusterKey = ClusterKey.generate()
    const delivered = new Map<string, string[]>()
    for (let i = 0; i < 3; i++) {
      const mesh = new Mesh({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], logger })
      const seen: string[] = []
      delivered.set(mesh.peerId, seen)
      mesh.subscribe('warm-up', () => {})
      mesh.subscribe('counted', (data) => { seen.push(new TextDecoder().decode(data)) })
      meshes.push(mesh)
    }
    for (const m of meshes) await m.start()
    const targets = meshes.map(m => ({ peerId: m.peerId, addresses: m.addresses() }))
    // Until every host knows every other's subscriptions (sent together for both topics when they connect).
    const deadline = Date.now() + 20_000
    for (const m of meshes) {
      while ((await m.publish('warm-up', new Uint8Array([1]))).length < 2) {
        if (Date.now() > deadline) throw new Error('the meshes did not connect')
        meshes.forEach((other, i) => { other.keepConnected(targets.slice(i + 1)) })
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
    const wireBefore = meshes.map(m => ({ ...m.stats().wire }))
    const payload = (i: number): string => `message ${i} ${'x'.repeat(100)}`
    await Promise.all(meshes.map(async (m, i) => await m.publish('counted', new TextEncoder().encode(payload(i)))))
    const bytes = payload(0).length
    const until = Date.now() + 10_000
    while ([...delivered.values()].some(seen => seen.length < 2) && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))

    meshes.forEach((m, i) => {
      const stats = m.stats()
      expect(stats.topics.counted).toEqual({ published: 1, bytesPublished: bytes, delivered: 2, bytesDelivered: 2 * bytes })
      const before = wireBefore[i]
      if (before === undefined) throw new Error('no sample')
      // Flood publish sends this host's message to both others; each of theirs arrives at least once.
      expect(stats.wire.messagesSent - before.messagesSent).toBeGreaterThanOrEqual(2)
      expect(stats.wire.messagesReceived - before.messagesReceived).toBeGreaterThanOrEqual(2)
      // An RPC carries the payload plus its signature, key, sequence number and topic.
      expect(stats.wire.rpcBytesReceived - before.rpcBytesReceived).toBeGreaterThan(2 * bytes)
      expect(stats.wire.rpcBytesSent - before.rpcBytesSent).toBeGreaterThan(2 * bytes)
    })
  }, 40_000)
})
