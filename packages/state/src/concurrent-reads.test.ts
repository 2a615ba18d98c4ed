// ClusterState.readMerged reads records without concurrent values from the materialized document: here it must give
// what the backend read (readMerged) gives, whatever replicas write while apart and however they merge.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import fc from 'fast-check'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { flatContent, isBucketed, rawPath } from './buckets.js'
import { ClusterState } from './cluster-state.js'
import { ConcurrentWrites } from './concurrent-writes.js'
import { readMerged } from './merged-read.js'
import { initializeFlat } from './states.fixture.js'

const logger = pino({ level: 'silent' })
type Tree = Record<string, any>

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pgmesh-concurrent-reads-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

type Layout = 'bucketed' | 'flat'

async function replicas (count: number, layout: Layout): Promise<ClusterState[]> {
  const states = await Promise.all(Array.from({ length: count }, async (_, i) => await ClusterState.open({ dir: join(dir, `host-${i}`), hostId: `host-${i}`, logger })))
  const [first] = states as [ClusterState]
  if (layout === 'bucketed') await first.initialize('c1')
  else initializeFlat(first, 'c1')
  await first.change({ op: 'test.db' }, d => { d.databases['db'] = { id: 'db', spec: { conf: { a: '1' } } } as never })
  for (const other of states.slice(1)) merge(first, other)
  return states
}

function merge (from: ClusterState, to: ClusterState): void {
  to.applyRemote('peer', doc => [A.merge(doc, A.clone(from.automergeDoc)), undefined])
}

async function write (state: ClusterState, fn: (db: Tree) => void): Promise<void> {
  await state.change({ op: 'test.write', entity: 'db' }, d => { fn((d.databases as Tree)['db']) })
}

/** The backend's read, which always merges and reports conflicts. */
function slow (state: ClusterState, id = 'db'): unknown {
  return readMerged(state.automergeDoc, rawPath(['databases', id], isBucketed(state.automergeDoc)) ?? [])
}

/** The backend's read of the whole document, with its records where readers see them. */
function slowWhole (state: ClusterState): unknown {
  const read = readMerged(state.automergeDoc, [])
  return read === undefined ? undefined : { value: flatContent(read.value), conflicts: read.conflicts.map(c => ({ ...c, path: c.path.replace(/^database_buckets\.[^.]*/, 'databases').replace(/^task_buckets\.[^.]*/, 'tasks') })) }
}

describe.each<Layout>(['bucketed', 'flat'])('ClusterState.readMerged on the current version of a %s document', layout => {
  it('takes the materialized document while the history has no concurrent changes, converting values as the backend read does', async () => {
    const [a] = await replicas(1, layout) as [ClusterState]
    await write(a, db => {
      db.at = new Date('2026-01-02T03:04:05.678Z')
      db.count = new A.Counter(3)
      db.raw = new A.ImmutableString('raw')
      db.list = ['x', { y: 'z' }, null]
      db.bytes = new Uint8Array([1, 2])
    })
    const read = a.readMerged(['databases', 'db'])
    expect(read).toEqual(slow(a))
    expect(read?.value).toMatchObject({ at: '2026-01-02T03:04:05.678Z', count: 3, raw: 'raw', list: ['x', { y: 'z' }, null] })
    expect(a.mayHoldConcurrentValues(['databases'])).toBe(false)
    expect(a.readMerged(['databases', 'nothing'])).toBeUndefined()
    expect(a.readMerged(['databases', 'db', 'at'])).toBeUndefined()
    await a.close()
  })

  it('shows a conflict that appears after a first read, and keeps showing what the backend shows once a write settles it', async () => {
    const [a, b] = await replicas(2, layout) as [ClusterState, ClusterState]
    expect(a.readMerged(['databases', 'db'])?.conflicts).toEqual([])
    await write(a, db => { db.spec.conf.a = '2' })
    await write(b, db => { db.spec.conf.a = '3' })
    merge(b, a)
    const conflicted = a.readMerged(['databases', 'db'])
    expect(conflicted?.conflicts.map(c => c.path)).toEqual(['spec.conf.a'])
    expect(conflicted).toEqual(slow(a))
    await write(a, db => { db.spec.conf.a = '4' })
    const settled = a.readMerged(['databases', 'db'])
    expect(settled).toEqual({ value: { id: 'db', spec: { conf: { a: '4' } } }, conflicts: [] })
    expect(settled).toEqual(slow(a))
    await a.close()
    await b.close()
  })

  it('merges maps created concurrently inside a record, and a record created twice', async () => {
    const [a, b] = await replicas(2, layout) as [ClusterState, ClusterState]
    await write(a, db => { db.primaries = { n1: { 1: 'i-a' } } })
    await write(b, db => { db.primaries = { n1: { 2: 'i-b' }, n2: { 1: 'i-c' } } })
    await a.change({ op: 'test.create', entity: 'db2' }, d => { d.databases['db2'] = { id: 'db2', by: 'a' } as never })
    await b.change({ op: 'test.create', entity: 'db2' }, d => { d.databases['db2'] = { id: 'db2', by: 'b' } as never })
    merge(b, a)
    expect(a.readMerged(['databases', 'db'])?.value).toEqual({ id: 'db', spec: { conf: { a: '1' } }, primaries: { n1: { 1: 'i-a', 2: 'i-b' }, n2: { 1: 'i-c' } } })
    expect(a.readMerged(['databases', 'db'])).toEqual(slow(a))
    expect(a.readMerged(['databases', 'db2'])).toEqual(slow(a, 'db2'))
    expect(a.mayHoldConcurrentValues(['databases'])).toBe(true)
    expect(a.recordConflict('databases', 'db2')?.values).toHaveLength(2)
    await a.close()
    await b.close()
  })

  it('reads an earlier version from the backend, with the conflicts it had then', async () => {
    const [a, b] = await replicas(2, layout) as [ClusterState, ClusterState]
    await write(a, db => { db.spec.conf.a = '2' })
    await write(b, db => { db.spec.conf.a = '3' })
    merge(b, a)
    const conflictedHeads = a.heads()
    await write(a, db => { db.spec.conf.a = '4' })
    expect(a.readMerged(['databases', 'db'], conflictedHeads)?.conflicts.map(c => c.path)).toEqual(['spec.conf.a'])
    expect(a.readMerged(['databases', 'db'], a.heads())?.conflicts).toEqual([])
    await a.close()
    await b.close()
  })

  it('matches the backend read whatever three replicas write while apart and however they merge', async () => {
    const keys = ['a', 'b', 'c'] as const
    const op = fc.oneof(
      fc.record({ kind: fc.constant('put' as const), r: fc.nat(2), map: fc.constantFrom('spec.conf', 'spec', 'primaries'), key: fc.constantFrom(...keys), value: fc.oneof(fc.constantFrom('1', '2'), fc.constant(null), fc.integer({ min: 0, max: 2 })) }),
      fc.record({ kind: fc.constant('map' as const), r: fc.nat(2), map: fc.constantFrom('spec.conf', 'primaries', 'spec'), key: fc.constantFrom(...keys) }),
      fc.record({ kind: fc.constant('delete' as const), r: fc.nat(2), map: fc.constantFrom('spec.conf', 'primaries'), key: fc.constantFrom(...keys) }),
      fc.record({ kind: fc.constant('list' as const), r: fc.nat(2), key: fc.constantFrom(...keys), size: fc.nat(2) }),
      fc.record({ kind: fc.constant('merge' as const), r: fc.nat(2), from: fc.nat(2) })
    )
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
      await rm(dir, { recursive: true, force: true })
      const states = await replicas(3, layout)
      try {
        for (const o of ops) {
          const state = states[o.r] as ClusterState
          if (o.kind === 'merge') {
            if (o.from !== o.r) merge(states[o.from] as ClusterState, state)
          } else {
            await write(state, db => {
              let target: Tree = db
              if (o.kind !== 'list') {
                for (const step of o.map.split('.')) {
                  if (typeof target[step] !== 'object' || target[step] === null || Array.isArray(target[step])) target[step] = {}
                  target = target[step]
                }
              }
              if (o.kind === 'put') target[o.key] = o.value
              else if (o.kind === 'map') target[o.key] = { [o.key]: `new-${o.r}` }
              else if (o.kind === 'delete') delete target[o.key]
              else target[`list-${o.key}`] = Array.from({ length: o.size }, (_, i) => ({ i, by: o.r }))
            })
          }
          for (const s of states) {
            expect(s.readMerged(['databases', 'db'])).toEqual(slow(s))
            expect(s.readMerged([])).toEqual(slowWhole(s))
          }
        }
      } finally {
        for (const s of states) await s.close()
      }
    }), { numRuns: 60 })
  })
})

describe('ClusterState.readMerged on a flat document', () => {
  // Only a flat document has one databases map that two hosts could create; a bucketed one makes its buckets once.
  it('merges the databases map when two hosts created it', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map(async h => await ClusterState.open({ dir: join(dir, h), hostId: h, logger }))) as [ClusterState, ClusterState]
    initializeFlat(a, 'c1')
    await a.change({ op: 'test.reset' }, d => { delete (d as Tree)['databases'] })
    merge(a, b)
    await a.change({ op: 'test.create' }, d => { (d as Tree)['databases'] = { x: { id: 'x' } } })
    await b.change({ op: 'test.create' }, d => { (d as Tree)['databases'] = { y: { id: 'y' } } })
    merge(b, a)
    // Merged as a key of the root; a read at the path follows the winning map, as the backend read does.
    expect(a.readMerged([])?.value['databases']).toEqual({ x: { id: 'x' }, y: { id: 'y' } })
    expect(a.readMerged([])).toEqual(readMerged(a.automergeDoc, []))
    expect(a.readMerged(['databases'])).toEqual(readMerged(a.automergeDoc, ['databases']))
    await a.close()
    await b.close()
  })
})

describe('ConcurrentWrites', () => {
  const ops = new Map<string, Array<{ obj: string, key?: string, elemId?: string, insert?: boolean }>>()
  const index = (): ConcurrentWrites => new ConcurrentWrites(hash => ops.get(hash))

  it('decodes nothing for a history in one line, and contests only the keys that concurrent changes both wrote', () => {
    ops.clear()
    ops.set('g', [{ obj: '_root', key: 'db' }])
    ops.set('a1', [{ obj: 'db', key: 'x' }, { obj: 'list', elemId: '_head', insert: true }])
    ops.set('b1', [{ obj: 'db', key: 'y' }, { obj: 'list', elemId: '_head', insert: true }])
    ops.set('a2', [{ obj: 'conf', key: 'k' }])
    ops.set('b2', [{ obj: 'conf', key: 'k' }])
    const decoded: string[] = []
    const writes = new ConcurrentWrites(hash => { decoded.push(hash); return ops.get(hash) })
    const history = [{ hash: 'g', deps: [] }, { hash: 'a1', deps: ['g'] }]
    writes.update(history)
    expect(decoded).toEqual([])
    // b1 was made beside a1: both are concurrent, but they wrote different keys and inserted list elements.
    history.push({ hash: 'b1', deps: ['g'] }, { hash: 'm', deps: ['a1', 'b1'] })
    writes.update(history)
    expect(decoded.sort()).toEqual(['a1', 'b1'])
    expect(['db', 'list', '_root'].some(o => writes.isContested(o))).toBe(false)
    // After the merge, two more concurrent changes write one key.
    history.push({ hash: 'a2', deps: ['m'] }, { hash: 'b2', deps: ['m'] })
    writes.update(history)
    expect(writes.isContested('conf')).toBe(true)
    expect(writes.isContested('db')).toBe(false)
    // Changes on top of everything decode nothing more; one made beside all of them since `g` (a host that was cut
    // off since then) makes every change after `g` concurrent.
    history.push({ hash: 'm2', deps: ['a2', 'b2'] }, { hash: 'c', deps: ['m2'] })
    decoded.length = 0
    writes.update(history)
    expect(decoded).toEqual([])
    history.push({ hash: 'late', deps: ['g'] })
    writes.update(history)
    expect(decoded.sort()).toEqual(['c', 'late', 'm', 'm2'])
    writes.reset()
    expect(writes.isContested('conf')).toBe(false)
  })

  it('contests everything, decoding nothing more, once over a quarter of a long history is concurrent', () => {
    ops.clear()
    const decoded: string[] = []
    const writes = new ConcurrentWrites(hash => { decoded.push(hash); return [] })
    const history = [{ hash: 'g', deps: [] as string[] }]
    for (let i = 0; i < 1000; i++) history.push({ hash: `l${i}`, deps: [history[history.length - 1]?.hash ?? 'g'] })
    // Beside the last 200 changes: 201 concurrent changes of 1,002, decoded.
    history.push({ hash: 'beside-200', deps: ['l799'] })
    writes.update(history)
    expect(decoded).toHaveLength(201)
    expect(writes.isContested('anything')).toBe(false)
    // Beside the last 400 as well: too many to decode.
    history.push({ hash: 'beside-400', deps: ['l599'] })
    writes.update(history)
    expect(decoded).toHaveLength(201)
    expect(writes.isContested('anything')).toBe(true)
  })

  it('contests everything when a change comes before one it depends on', () => {
    ops.clear()
    const writes = index()
    writes.update([{ hash: 'b', deps: ['a'] }])
    expect(writes.isContested('anything')).toBe(true)
  })
})
