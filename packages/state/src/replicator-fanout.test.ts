import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { ClusterKey, Mesh } from '@pgmesh/mesh'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { ClusterState } from './cluster-state.js'
import { DocReplicator } from './replicator.js'

const logger = pino({ level: 'silent' })

interface Node { state: ClusterState, mesh: Mesh, replicator: DocReplicator, dir: string }
const nodes: Node[] = []

async function startNode (key: ClusterKey, hostId: string): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), `pgmesh-fanout-${hostId}-`))
  const state = await ClusterState.open({ dir, hostId, logger })
  const mesh = new Mesh({ privateKey: await generateKeyPair('Ed25519'), clusterKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], logger })
  // Anti-entropy at its default period: the relay, not a fast resync, must carry changes across the line topology.
  const replicator = new DocReplicator(state, mesh, { logger })
  await mesh.start()
  replicator.start()
  const node = { state, mesh, replicator, dir }
  nodes.push(node)
  return node
}

async function until (what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

afterEach(async () => {
  for (const n of nodes.splice(0)) {
    n.replicator.stop()
    await n.mesh.stop()
    await n.state.close()
    await rm(n.dir, { recursive: true, force: true })
  }
})

/** Sync messages received per change per host, `changes` changes made one at a time on hosts in turn, full mesh. */
async function syncMessagesPerChangePerHost (hosts: number, changes: number): Promise<number> {
  const key = ClusterKey.generate()
  const all: Node[] = []
  for (let i = 0; i < hosts; i++) all.push(await startNode(key, `h${i}`))
  await all[0]?.state.initialize('cluster-1')
  for (let i = 0; i < hosts; i++) {
    for (let j = i + 1; j < hosts; j++) await all[i]?.mesh.dial(all[j]?.mesh.addresses()[0] ?? '')
  }
  await until('genesis everywhere', () => all.every(n => n.state.initialized))
  // Let gossipsub form its mesh (heartbeat 1 s) and the join's own sync rounds settle before counting.
  await sleep(3000)
  const received = (): number => all.reduce((sum, n) => sum + n.replicator.stats.syncMessagesReceived, 0)
  const before = received()
  for (let c = 0; c < changes; c++) {
    const author = all[c % hosts] as Node
    await author.state.change({ op: 'test' }, d => { d.databases[`db${c}`] = { v: c } as never })
    await until(`change ${c} everywhere`, () => all.every(n => n.state.doc.databases?.[`db${c}`] !== undefined))
    // Room for the relay's coalescing delay and the replies, so every message a change causes is counted.
    await sleep(300)
  }
  const perChangePerHost = (received() - before) / changes / hosts
  const relays = all.reduce((sum, n) => sum + n.replicator.stats.relayRounds, 0)
  const resyncs = all.reduce((sum, n) => sum + n.replicator.stats.resyncRounds, 0)
  console.log(`${hosts} hosts: ${perChangePerHost.toFixed(2)} sync messages received per change per host ` +
    `(${relays} relay rounds, ${resyncs} anti-entropy rounds in all)`)
  return perChangePerHost
}

describe('document replication cost and reach', () => {
  it('costs a bounded number of sync messages per change per host, not one per peer (3 and 10 hosts)', async () => {
    const at3 = await syncMessagesPerChangePerHost(3, 12)
    for (const n of nodes.splice(0)) {
      n.replicator.stop()
      await n.mesh.stop()
      await n.state.close()
      await rm(n.dir, { recursive: true, force: true })
    }
    const at10 = await syncMessagesPerChangePerHost(10, 20)
    // Relaying every remote change to every peer measured 2.0 here at 3 hosts and 9.0 at 10 (n-1: every host hears
    // of every change from every peer). Now a change costs the author's exchange with each peer (~2 per host) plus
    // the anti-entropy rounds' heads exchange, which is per round, not per change: 1.4-1.7 and 3.4-5.2 measured
    // (the machine's load sets how many rounds a test run spans).
    expect(at3).toBeLessThan(3)
    expect(at10).toBeLessThan(7)
  }, 120_000)

  it('brings a change across hosts that are not connected to each other (a line A-B-C), within a bound', async () => {
    const key = ClusterKey.generate()
    const a = await startNode(key, 'a')
    const b = await startNode(key, 'b')
    const c = await startNode(key, 'c')
    await a.state.initialize('cluster-1')
    await a.mesh.dial(b.mesh.addresses()[0] ?? '')
    await c.mesh.dial(b.mesh.addresses()[0] ?? '')
    await until('genesis everywhere', () => b.state.initialized && c.state.initialized)
    expect(a.mesh.connectedPeers()).not.toContain(c.mesh.peerId)
    for (let i = 0; i < 5; i++) {
      const started = Date.now()
      const [from, to] = i % 2 === 0 ? [a, c] : [c, a]
      await from.state.change({ op: 'test' }, d => { d.databases[`line${i}`] = { v: i } as never })
      await until(`line change ${i} at the far end`, () => to.state.doc.databases?.[`line${i}`] !== undefined, 5000)
      // Well inside the 2 s anti-entropy period: gossip forwarding or the relay, not the periodic resync, carried it.
      expect(Date.now() - started).toBeLessThan(1500)
    }
  }, 60_000)
})
