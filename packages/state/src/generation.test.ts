// The compaction rule on real replicas: frontiers every member acknowledged, deterministic genesis, and the hosts
// that come back from a month offline (merging what they did, or told why they cannot).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ClusterState } from './cluster-state.js'
import { checkFrontier, GenerationGapError, includesFrontier, startGeneration } from './generation.js'
import { plainStrings } from './scalar-strings.js'

const logger = pino({ level: 'silent' })
const DAY = 24 * 3600 * 1000
let dir: string

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pgmesh-generation-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

async function replica (hostId: string): Promise<ClusterState> {
  return await ClusterState.open({ dir: join(dir, hostId), hostId, logger })
}

/** One-way sync by merging the whole document, as adopt/sync would deliver it. */
function pull (to: ClusterState, from: ClusterState): void {
  const bytes = A.save(from.automergeDoc)
  to.applyRemote('peer', doc => [A.merge(doc, A.load(bytes)), undefined])
}

async function setConf (s: ClusterState, key: string, value: string): Promise<void> {
  await s.change({ op: 'database.update', entity: 'db' }, d => {
    (d.databases.db as unknown as { conf: Record<string, string> }).conf[key] = value
  })
}

function conf (s: ClusterState): Record<string, string> {
  return { ...(s.doc.databases?.db as unknown as { conf: Record<string, string> }).conf }
}

/** Three synced hosts with one database, and a busy history of task records. */
async function cluster (): Promise<[ClusterState, ClusterState, ClusterState]> {
  const [a, b, c] = [await replica('a'), await replica('b'), await replica('c')]
  await a.initialize('c1')
  await a.change({ op: 'database.create', entity: 'db' }, d => { d.databases.db = { id: 'db', conf: { work_mem: '4MB' } } as never })
  for (let i = 0; i < 200; i++) {
    const id = `t${i}`
    await a.change({ op: 'task.create' }, d => { d.tasks[id] = { task_id: id, status: 'pending' } as never })
    await a.change({ op: 'task.completed' }, d => { (d.tasks[id] as { status: string }).status = 'completed' })
  }
  pull(b, a)
  pull(c, a)
  return [a, b, c]
}

async function closeAll (...states: ClusterState[]): Promise<void> {
  for (const s of states) await s.close()
}

describe('checkFrontier', () => {
  it('waits until every member acknowledged heads that include the frontier, except members silent too long', async () => {
    const [a, b, c] = await cluster()
    const frontier = a.heads()
    await setConf(a, 'later', '1')
    const now = 100 * DAY
    const options = { now, maxSilenceMs: 14 * DAY }
    // b acknowledged the frontier; c only acknowledged an older version.
    const older = A.getHeads(A.view(a.automergeDoc, frontier)).length > 0 ? a.changes()[10]?.hash : undefined
    const acks = new Map([['a', { heads: a.heads(), at: now }], ['b', { heads: frontier, at: now - DAY }], ['c', { heads: [older ?? ''], at: now - DAY }]])
    expect(checkFrontier(a.automergeDoc, frontier, ['a', 'b', 'c'], acks, options)).toEqual({ ok: false, waitingFor: ['c'], notWaitedFor: [] })
    // An unknown member is waited for; a member silent for a month is not.
    expect(checkFrontier(a.automergeDoc, frontier, ['a', 'b', 'd'], acks, options).waitingFor).toEqual(['d'])
    acks.set('c', { heads: [older ?? ''], at: now - 30 * DAY })
    expect(checkFrontier(a.automergeDoc, frontier, ['a', 'b', 'c'], acks, options)).toEqual({ ok: true, waitingFor: [], notWaitedFor: ['c'] })
    expect(includesFrontier(a.automergeDoc, a.heads(), frontier)).toBe(true)
    expect(includesFrontier(a.automergeDoc, frontier, a.heads())).toBe(false)
    await closeAll(a, b, c)
  })
})

describe('startGeneration', () => {
  it('gives every host the same genesis from the same frontier, with the content and none of the history', async () => {
    const [a, b, c] = await cluster()
    const frontier = a.heads()
    const fromA = startGeneration(a.automergeDoc, frontier)
    const fromB = startGeneration(b.automergeDoc, frontier)
    expect(A.getHeads(fromA)).toEqual(A.getHeads(fromB))
    expect(A.getAllChanges(fromA)).toHaveLength(1)
    const { generation: _g, ...content } = plainStrings(A.toJS(fromA))
    expect(content).toEqual(plainStrings(A.toJS(a.automergeDoc)))
    expect(fromA.generation).toEqual({ number: 2, frontiers: [{ number: 2, heads: [...frontier].sort() }] })
    expect(A.save(fromA).length).toBeLessThan(A.save(a.automergeDoc).length)
    // Merging two hosts' independently made geneses is one document, not two concurrent copies.
    const merged = A.merge(A.clone(fromA), fromB)
    expect(A.getHeads(merged)).toEqual(A.getHeads(fromA))
    expect(A.getConflicts(merged, 'databases')).toBeUndefined()
    await closeAll(a, b, c)
  })
})

describe('entering a generation', () => {
  it('a host offline for a month merges the edits it made after the frontier, through two compactions', async () => {
    const [a, b, c] = await cluster()
    const frontier = a.heads()
    // c held the frontier, then went offline for a month and kept editing.
    await setConf(c, 'work_mem', '64MB')
    await setConf(c, 'c_only', 'yes')
    // Meanwhile a and b compacted (generation 2), kept editing, and compacted again without c (generation 3).
    await a.enterGeneration(startGeneration(a.automergeDoc, frontier))
    expect(await b.enterGeneration(a.automergeDoc)).toBe(0)
    await setConf(a, 'shared_buffers', '1GB')
    pull(b, a)
    await b.enterGeneration(startGeneration(b.automergeDoc, b.heads()))
    await a.enterGeneration(startGeneration(a.automergeDoc, a.heads()))
    expect(A.getHeads(a.automergeDoc)).toEqual(A.getHeads(b.automergeDoc))
    expect(a.doc.generation?.number).toBe(3)

    // c comes back on generation 1: its two edits replay onto generation 3, a's later edit stays.
    expect(await c.enterGeneration(a.automergeDoc)).toBe(2)
    expect(conf(c)).toEqual({ work_mem: '64MB', c_only: 'yes', shared_buffers: '1GB' })
    pull(a, c)
    expect(conf(a)).toEqual(conf(c))
    expect(a.changes().map(ch => ch.meta?.op)).toContain('generation.replay')

    // What c holds on disk is the new generation, small: reopening shows the same document.
    const size = c.sizeBytes()
    await c.close()
    const reopened = await replica('c')
    expect(conf(reopened)).toEqual({ work_mem: '64MB', c_only: 'yes', shared_buffers: '1GB' })
    expect(reopened.doc.generation?.number).toBe(3)
    expect(reopened.sizeBytes()).toBe(size)
    await closeAll(a, b, reopened)
  })

  it('replays only the host\'s own edits, not a stale copy of others\' that the cluster changed since', async () => {
    const [a, b, c] = await cluster()
    const frontier = a.heads()
    await setConf(b, 'work_mem', '8MB')
    pull(c, b) // c saw b's edit before going offline
    await setConf(c, 'c_only', 'yes')
    await b.enterGeneration(startGeneration(b.automergeDoc, frontier))
    await setConf(b, 'work_mem', '16MB') // newer than the copy c holds
    await c.enterGeneration(b.automergeDoc)
    expect(conf(c)).toEqual({ work_mem: '16MB', c_only: 'yes' })
    await closeAll(a, b, c)
  })

  it('a host that never held the frontier is told which of its changes are lost and how to recover, and keeps its document', async () => {
    const [a, b, c] = await cluster()
    // c went offline before these changes reached it, and the cluster compacted without it (silent too long).
    await setConf(a, 'work_mem', '32MB')
    await setConf(c, 'c_only', 'yes')
    await a.enterGeneration(startGeneration(a.automergeDoc, a.heads()))
    const before = c.heads()
    const err = await c.enterGeneration(a.automergeDoc).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(GenerationGapError)
    const gap = err as GenerationGapError
    expect(gap.localGeneration).toBe(1)
    expect(gap.clusterGeneration).toBe(2)
    expect(gap.unmerged.map(m => `${m.op} ${m.entity ?? ''}`)).toEqual(['database.update db'])
    expect(gap.message).toMatch(/never reached; its 1 change\(s\) .* are lost \(database\.update db at .*\)\. Recover by removing the host/)
    expect(c.heads()).toEqual(before)
    await closeAll(a, b, c)
  })
})
