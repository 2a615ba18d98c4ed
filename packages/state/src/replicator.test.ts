import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClusterKey, Mesh, loadOrCreatePeerKey } from '@pgmesh/mesh'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { ClusterState } from './cluster-state.js'
import { DocReplicator } from './replicator.js'

const logger = pino({ level: 'silent' })

interface Node { state: ClusterState, mesh: Mesh, replicator: DocReplicator, dir: string }

const nodes: Node[] = []

async function startNode (key: ClusterKey, hostId: string): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), `pgmesh-rep-${hostId}-`))
  const state = await ClusterState.open({ dir: join(dir, 'state'), hostId, logger })
  const mesh = new Mesh({ privateKey: await loadOrCreatePeerKey(join(dir, 'peer.key')), clusterKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], logger })
  const replicator = new DocReplicator(state, mesh, { logger, resyncMs: 500 })
  await mesh.start()
  replicator.start()
  const node = { state, mesh, replicator, dir }
  nodes.push(node)
  return node
}

async function until (what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

afterEach(async () => {
  for (const n of nodes.splice(0)) {
    n.replicator.stop()
    await n.mesh.stop()
    await n.state.close()
    await rm(n.dir, { recursive: true, force: true })
  }
})

describe('document replication over libp2p', () => {
  it('brings empty hosts to the genesis and spreads every change to all', async () => {
    const key = ClusterKey.generate()
    const a = await startNode(key, 'a')
    await a.state.initialize('cluster-1')
    const b = await startNode(key, 'b')
    const c = await startNode(key, 'c')
    await b.mesh.dial(a.mesh.addresses()[0] ?? '')
    await c.mesh.dial(a.mesh.addresses()[0] ?? '')
    await until('genesis everywhere', () => b.state.initialized && c.state.initialized)

    // c is only connected to a: its change must still reach b (relay through a).
    await c.state.change({ op: 'test' }, d => { d.databases.fromC = { v: 1 } as never })
    await b.state.change({ op: 'test' }, d => { d.databases.fromB = { v: 2 } as never })
    await until('both changes on all hosts', () => nodes.every(n => n.state.doc.databases?.fromC !== undefined && n.state.doc.databases?.fromB !== undefined))
    const heads = nodes.map(n => n.state.heads().join(','))
    expect(new Set(heads).size).toBe(1)
  })

  it('refuses a peer that does not hold the cluster key', async () => {
    const a = await startNode(ClusterKey.generate(), 'a')
    await a.state.initialize('cluster-1')
    const stranger = await startNode(ClusterKey.generate(), 'x')
    await expect(stranger.mesh.dial(a.mesh.addresses()[0] ?? '', AbortSignal.timeout(3000))).rejects.toThrow()
    expect(a.mesh.connectedPeers()).toHaveLength(0)
    expect(stranger.state.initialized).toBe(false)
  })

  it('merges edits made on both sides of a partition', async () => {
    const key = ClusterKey.generate()
    const a = await startNode(key, 'a')
    await a.state.initialize('cluster-1')
    const b = await startNode(key, 'b')
    await b.mesh.dial(a.mesh.addresses()[0] ?? '')
    await until('b initialized', () => b.state.initialized)
    const bAddress = b.mesh.addresses()[0] ?? ''
    // Partition: stop b's networking entirely, edit on both sides, then bring it back.
    b.replicator.stop()
    await b.mesh.stop()
    await a.state.change({ op: 'test' }, d => { d.databases.x = { side: 'a', shared: 'a' } as never })
    await b.state.change({ op: 'test' }, d => { d.databases.y = { side: 'b' } as never })
    const b2mesh = new Mesh({ privateKey: await loadOrCreatePeerKey(join(b.dir, 'peer.key')), clusterKey: key, listen: [bAddress.replace(/\/p2p\/.*/, '')], logger })
    const b2 = { ...b, mesh: b2mesh, replicator: new DocReplicator(b.state, b2mesh, { logger, resyncMs: 500 }) }
    nodes[1] = b2
    await b2.mesh.start()
    b2.replicator.start()
    await b2.mesh.dial(a.mesh.addresses()[0] ?? '')
    await until('merged', () => a.state.doc.databases?.y !== undefined && b.state.doc.databases?.x !== undefined)
    expect(a.state.heads()).toEqual(b.state.heads())
  })
})
