import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { ClusterKey, Mesh, loadOrCreatePeerKey } from '@pgmesh/mesh'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { ClusterState, type Doc } from './cluster-state.js'
import { Compactor, type CompactionPolicy } from './compactor.js'
import { startGeneration } from './generation.js'
import { DocReplicator } from './replicator.js'
import { BUCKETED_FORMAT, bucketOf, isBucketed } from './buckets.js'
import { SCALAR_STRINGS_FORMAT } from './scalar-strings.js'

const logger = pino({ level: 'silent' })

interface Node {
  hostId: string
  state: ClusterState
  mesh: Mesh
  replicator: DocReplicator
  compactor: Compactor
  dir: string
  /** Errors from moving to a later generation (GenerationGapError). */
  enterErrors: Error[]
}
const nodes: Node[] = []

function members (): Array<{ hostId: string, peerId: string }> {
  return nodes.map(n => ({ hostId: n.hostId, peerId: n.mesh.peerId }))
}

async function wire (node: Omit<Node, 'mesh' | 'replicator' | 'compactor'>, key: ClusterKey, policy: CompactionPolicy, listen = '/ip4/127.0.0.1/tcp/0'): Promise<Node> {
  const mesh = new Mesh({ privateKey: await loadOrCreatePeerKey(join(node.dir, 'peer.key')), clusterKey: key, listen: [listen], logger })
  const replicator = new DocReplicator(node.state, mesh, {
    logger,
    resyncMs: 500,
    onLaterGeneration: async (doc) => {
      try { await node.state.enterGeneration(doc as Doc) } catch (err) { node.enterErrors.push(err as Error); throw err }
    }
  })
  const compactor = new Compactor({
    state: node.state,
    hostId: node.hostId,
    peerId: () => mesh.peerId,
    members,
    acknowledgements: () => replicator.acknowledgements(),
    startGeneration: (doc, frontier) => startGeneration(doc, frontier),
    enterGeneration: async (next) => await node.state.enterGeneration(next),
    logger
  }, policy)
  await mesh.start()
  replicator.start()
  return { ...node, mesh, replicator, compactor }
}

async function startNode (key: ClusterKey, hostId: string, policy: CompactionPolicy): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), `pgmesh-compactor-${hostId}-`))
  const state = await ClusterState.open({ dir: join(dir, 'state'), hostId, logger })
  const node = await wire({ hostId, state, dir, enterErrors: [] }, key, policy)
  nodes.push(node)
  return node
}

/** Stops a node's networking (its document stays open, as a host cut off), and later brings it back at its address. */
async function cutOff (node: Node): Promise<() => Promise<Node>> {
  const address = node.mesh.addresses()[0]?.replace(/\/p2p\/.*/, '') ?? ''
  node.replicator.stop()
  await node.mesh.stop()
  return async () => {
    const back = await wire(node, key0 as ClusterKey, { afterChanges: 1_000_000 }, address)
    nodes[nodes.indexOf(node)] = back
    for (const n of nodes) if (n !== back) await back.mesh.dial(n.mesh.addresses()[0] ?? '')
    return back
  }
}

let key0: ClusterKey | undefined

async function until (what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

async function threeHosts (policy: CompactionPolicy): Promise<[Node, Node, Node]> {
  key0 = ClusterKey.generate()
  const a = await startNode(key0, 'a', policy)
  const b = await startNode(key0, 'b', policy)
  const c = await startNode(key0, 'c', policy)
  await a.state.initialize('cluster-1')
  await b.mesh.dial(a.mesh.addresses()[0] ?? '')
  await c.mesh.dial(a.mesh.addresses()[0] ?? '')
  await c.mesh.dial(b.mesh.addresses()[0] ?? '')
  await until('genesis everywhere', () => b.state.initialized && c.state.initialized)
  return [a, b, c]
}

/** Three hosts on one document as a pgmesh before scalar strings wrote it: every string is text. */
async function threeHostsOnTextDocument (policy: CompactionPolicy): Promise<[Node, Node, Node]> {
  key0 = ClusterKey.generate()
  const [a, b, c] = [await startNode(key0, 'a', policy), await startNode(key0, 'b', policy), await startNode(key0, 'c', policy)]
  const old = A.change(A.init<Record<string, unknown>>(), d => {
    d.cluster = { id: 'cluster-1', created_at: '2026-01-01T00:00:00.000Z' }
    d.hosts = { a: { id: 'a' }, b: { id: 'b' }, c: { id: 'c' } }
    d.databases = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`db${i}`, { state: 'available', spec: { database_name: `database_${i}` } }]))
    d.tasks = {}
  })
  a.state.applyRemote('old', (doc, options) => [A.loadIncremental(doc, A.save(old), options), undefined])
  await b.mesh.dial(a.mesh.addresses()[0] ?? '')
  await c.mesh.dial(a.mesh.addresses()[0] ?? '')
  await until('the old document everywhere', () => b.state.initialized && c.state.initialized && sameHeads())
  return [a, b, c]
}

async function edits (node: Node, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await node.state.change({ op: 'test', entity: `${prefix}${i}` }, d => { d.databases[`${prefix}${i % 5}`] = { v: i } as never })
}

const sameHeads = (): boolean => new Set(nodes.map(n => n.state.heads().join(','))).size === 1
const generation = (n: Node): number => n.state.doc.generation?.number ?? 1

afterEach(async () => {
  for (const n of nodes.splice(0)) {
    n.compactor.stop()
    n.replicator.stop()
    await n.mesh.stop()
    await n.state.close()
    await rm(n.dir, { recursive: true, force: true })
  }
})

describe('document generations over the mesh', () => {
  it('moves every host to the next generation once all acknowledged the frontier; the document shrinks and syncs on', async () => {
    const [a, b, c] = await threeHosts({ afterChanges: 150 })
    await edits(a, 'x', 80)
    await edits(b, 'y', 80)
    await until('converged', sameHeads)
    await Promise.all(nodes.map(async n => { await n.state.flush() }))
    const before = nodes.map(n => n.state.sizeBytes())
    // Only the member with the smallest host id starts a generation.
    expect(await b.compactor.check()).toBe(false)
    expect(b.compactor.lastCheck?.outcome).toBe('another member starts generations')
    await until('a starts generation 2', () => { void a.compactor.check(); return generation(a) === 2 })
    // The replica switches before its old history leaves the disk: wait for the rewrite too.
    await until('b and c follow, their old history gone from disk', () => generation(b) === 2 && generation(c) === 2 && sameHeads() &&
      nodes.every((n, i) => n.state.sizeBytes() < (before[i] ?? 0) / 3))
    console.log(`document on disk before / after compaction: ${before.join(', ')} / ${nodes.map(n => n.state.sizeBytes()).join(', ')} bytes`)
    for (const [i, n] of nodes.entries()) {
      expect(n.state.sizeBytes()).toBeLessThan((before[i] ?? 0) / 3)
      expect(n.state.doc.databases?.x4).toEqual({ v: 79 })
      expect(n.state.doc.databases?.y4).toEqual({ v: 79 })
    }
    // The new generation syncs like the old one.
    await c.state.change({ op: 'test' }, d => { d.databases.after = { v: 1 } as never })
    await until('a change after the compaction everywhere', () => nodes.every(n => n.state.doc.databases?.after !== undefined) && sameHeads())
    expect(a.replicator.stats.otherGeneration + b.replicator.stats.otherGeneration + c.replicator.stats.otherGeneration).toBeGreaterThan(0)
  }, 60_000)

  it('rewrites a document of text strings as scalars once every host reads them, however short its history', async () => {
    const [a, b] = await threeHostsOnTextDocument({ afterChanges: 1_000_000 })
    const clusterId = (doc: Doc): string | undefined => {
      const backend = A.getBackend(doc)
      return backend.getWithType(backend.getWithType('_root', 'cluster')?.[1] as string, 'id')?.[0]
    }
    expect(clusterId(a.state.automergeDoc)).toBe('text')
    // Two of three hosts upgraded: nothing to do yet.
    await b.state.change({ op: 'test' }, d => { for (const h of ['a', 'b']) (d.hosts[h] as { document_format?: number }).document_format = SCALAR_STRINGS_FORMAT })
    await until('converged', sameHeads)
    expect(await a.compactor.check()).toBe(false)
    expect(a.compactor.lastCheck?.outcome).toBe('history below the threshold')
    const textOps = A.stats(a.state.automergeDoc).numOps
    await b.state.change({ op: 'test' }, d => { (d.hosts.c as { document_format?: number }).document_format = SCALAR_STRINGS_FORMAT })
    await until('a starts generation 2', () => { void a.compactor.check(); return generation(a) === 2 })
    await until('every host on generation 2', () => nodes.every(n => generation(n) === 2) && sameHeads())
    for (const n of nodes) {
      expect(clusterId(n.state.automergeDoc)).toBe('str')
      expect(n.state.doc.databases?.db7).toEqual({ state: 'available', spec: { database_name: 'database_7' } })
    }
    expect(A.stats(a.state.automergeDoc).numOps * 3).toBeLessThan(textOps)
    // Rewritten once: the next check finds nothing to do.
    expect(await a.compactor.check()).toBe(false)
    expect(a.compactor.lastCheck?.outcome).toBe('history below the threshold')
  }, 60_000)

  it('rewrites a flat document into buckets once every host reads them (after its text), however short its history', async () => {
    const [a, b] = await threeHostsOnTextDocument({ afterChanges: 1_000_000 })
    const setFormat = async (hosts: string[], format: number): Promise<void> => {
      await b.state.change({ op: 'test' }, d => { for (const h of hosts) (d.hosts[h] as { document_format?: number }).document_format = format })
    }
    // Two of three hosts read buckets, the third scalars only: the text is rewritten (generation 2), still flat.
    await setFormat(['a', 'b'], BUCKETED_FORMAT)
    await setFormat(['c'], SCALAR_STRINGS_FORMAT)
    await until('every host on generation 2', () => { void a.compactor.check(); return nodes.every(n => generation(n) === 2) && sameHeads() })
    expect(nodes.some(n => isBucketed(n.state.automergeDoc))).toBe(false)
    expect(await a.compactor.check()).toBe(false)
    expect(a.compactor.lastCheck?.outcome).toBe('history below the threshold')
    const flat = a.state.doc.databases
    expect(Object.keys(flat ?? {})).toHaveLength(20)
    // The third reads them too: generation 3 is bucketed, with the same records.
    await setFormat(['c'], BUCKETED_FORMAT)
    await until('every host on generation 3', () => { void a.compactor.check(); return nodes.every(n => generation(n) === 3) && sameHeads() })
    for (const n of nodes) {
      expect(isBucketed(n.state.automergeDoc)).toBe(true)
      expect(n.state.doc.databases).toEqual(flat)
    }
    // Written into its bucket on every host.
    await a.state.change({ op: 'test' }, d => { d.databases.after = { v: 1 } as never })
    await until('the new record everywhere', () => nodes.every(n => n.state.doc.databases?.after !== undefined) && sameHeads())
    expect(Object.keys((b.state.automergeDoc as Record<string, any>).database_buckets[bucketOf('after')])).toContain('after')
    // Rewritten once: the next check finds nothing to do.
    expect(await a.compactor.check()).toBe(false)
    expect(a.compactor.lastCheck?.outcome).toBe('history below the threshold')
  }, 60_000)

  it('a host cut off after acknowledging the frontier merges its offline edits when it comes back', async () => {
    const [a, b, c] = await threeHosts({ afterChanges: 50 })
    await edits(a, 'x', 60)
    await until('converged', sameHeads)
    // c acknowledged everything; cut off, it edits alone while the others compact at the frontier it holds.
    await until('c acknowledged', () => a.replicator.acknowledgements().get(c.mesh.peerId)?.heads.join(',') === a.state.heads().join(','))
    const bringBack = await cutOff(c)
    await c.state.change({ op: 'test' }, d => { d.databases.offline = { by: 'c' } as never })
    await until('a starts generation 2 without new changes', () => { void a.compactor.check(); return generation(a) === 2 })
    await until('b follows', () => generation(b) === 2)
    const c2 = await bringBack()
    await until('c moves to generation 2 and its offline edit reaches all', () =>
      generation(c2) === 2 && nodes.every(n => (n.state.doc.databases?.offline as { by?: string } | undefined)?.by === 'c') && sameHeads())
    expect(c2.enterErrors).toEqual([])
  }, 60_000)

  it('a host that missed the frontier (silent past max silence) is refused with GenerationGapError and keeps its document', async () => {
    const [a, b, c] = await threeHosts({ afterChanges: 50, maxSilenceMs: 1000 })
    await edits(a, 'x', 60)
    await until('converged', sameHeads)
    const bringBack = await cutOff(c)
    await c.state.change({ op: 'test', entity: 'lost-edit' }, d => { d.databases.offline = { by: 'c' } as never })
    // The cluster moves on past what c holds, then compacts without waiting for it.
    await edits(b, 'y', 5)
    await new Promise(resolve => setTimeout(resolve, 1500))
    await until('a starts generation 2 without c', () => { void a.compactor.check(); return generation(a) === 2 })
    // Were b still on generation 1, c would get the frontier from it by sync and then merge (rightly): not this case.
    await until('b follows', () => generation(b) === 2)
    const heads: A.Heads = c.state.heads()
    const c2 = await bringBack()
    await until('c is refused', () => c2.enterErrors.length > 0)
    const [error] = c2.enterErrors
    expect(error?.name).toBe('GenerationGapError')
    expect(error?.message).toMatch(/lost-edit/)
    expect(error?.message).toMatch(/wiping its data directory/)
    // Its document is left as it was: no merge across the generations, however often a peer offers its document.
    await new Promise(resolve => setTimeout(resolve, 2500))
    expect(generation(c2)).toBe(1)
    expect(c2.state.heads()).toEqual(heads)
    expect(c2.enterErrors.every(e => e.name === 'GenerationGapError')).toBe(true)
    expect(a.state.doc.databases?.offline).toBeUndefined()
    // The replicator keeps the refusal for operators, until c is on a generation again (here one of its own making).
    expect(c2.replicator.generationGap).toBe(error)
    await c2.state.enterGeneration(startGeneration(c2.state.automergeDoc, c2.state.heads()))
    expect(c2.replicator.generationGap).toBeUndefined()
  }, 60_000)
})
