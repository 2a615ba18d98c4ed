import * as A from '@automerge/automerge'
import { describe, expect, it } from 'vitest'
import type { ClusterState } from './cluster-state.js'
import { initializeFlat, statesPerTest } from './states.fixture.js'
import { startGeneration } from './generation.js'
import { SCALAR_STRINGS_FORMAT, stringWriter } from './scalar-strings.js'

/** How Automerge stores the value at `path`: 'str' (scalar), 'text', 'map', … */
function storedAs (doc: A.Doc<unknown>, path: ReadonlyArray<string | number>): string | undefined {
  const backend = A.getBackend(doc)
  let obj = '_root'
  let type: string | undefined
  for (const key of path) {
    const value = backend.getWithType(obj, key)
    if (value === null || value === undefined) return undefined
    type = value[0]
    obj = value[1] as string
  }
  return type
}

/** Every leaf string of `value`, with its path: any `ImmutableString` left in a document handed out fails a test. */
function leaves (value: unknown, path = ''): Array<[string, unknown]> {
  if (typeof value !== 'object' || value === null) return [[path, value]]
  if (value instanceof A.ImmutableString) return [[path, value]]
  return Object.entries(value).flatMap(([k, v]) => leaves(v, `${path}/${k}`))
}

function expectPlain (doc: unknown): void {
  const objects = leaves(doc).filter(([, v]) => typeof v === 'object' && v !== null)
  expect(objects).toEqual([])
}

const record = (i: number): Record<string, unknown> => ({
  id: `db-${i}`,
  spec: { database_name: `database_${i}`, nodes: [{ name: 'n1', host_ids: ['host-1'] }], postgres_version: '17.6' },
  created_at: '2026-12-01T00:00:00.000Z',
  state: 'available'
})

// Hosts that read only text predate bucketed collections, so these documents are flat, as those hosts made them.
describe('strings stored as scalars', () => {
  const { open, close } = statesPerTest('scalar')

  async function cluster (formats: Record<string, number | undefined>): Promise<ClusterState> {
    const a = await open('a')
    initializeFlat(a, 'c1')
    await a.change({ op: 'test.hosts' }, d => {
      for (const [id, format] of Object.entries(formats)) d.hosts[id] = { id, ...(format === undefined ? {} : { document_format: format }) } as never
    })
    return a
  }

  it('are written only once every host reads them, and read as strings either way', async () => {
    const a = await cluster({ 'host-1': SCALAR_STRINGS_FORMAT, 'host-2': undefined })
    await a.change({ op: 'test' }, d => { d.databases['db-1'] = record(1) as never })
    expect(storedAs(a.automergeDoc, ['databases', 'db-1', 'state'])).toBe('text')

    await a.change({ op: 'test' }, d => { (d.hosts['host-2'] as { document_format?: number }).document_format = SCALAR_STRINGS_FORMAT })
    await a.change({ op: 'test' }, d => { d.databases['db-2'] = record(2) as never })
    expect(storedAs(a.automergeDoc, ['databases', 'db-2', 'state'])).toBe('str')
    expect(storedAs(a.automergeDoc, ['databases', 'db-2', 'spec', 'nodes', 0, 'host_ids', 0])).toBe('str')
    // The old record keeps its text until it is written again.
    expect(storedAs(a.automergeDoc, ['databases', 'db-1', 'state'])).toBe('text')

    expect(a.doc.databases?.['db-2']).toEqual(record(2))
    expect(a.doc.databases?.['db-1']).toEqual(record(1))
    expectPlain(a.doc)
  })

  it('cost far fewer operations than text', async () => {
    const text = await cluster({ 'host-1': undefined })
    const scalar = await open('b')
    initializeFlat(scalar, 'c1')
    await scalar.change({ op: 'test.hosts' }, d => { d.hosts['host-1'] = { id: 'host-1', document_format: SCALAR_STRINGS_FORMAT } as never })
    for (const state of [text, scalar]) {
      await state.change({ op: 'test' }, d => { for (let i = 0; i < 50; i++) d.databases[`db-${i}`] = record(i) as never })
    }
    const textOps = A.stats(text.automergeDoc).numOps
    const scalarOps = A.stats(scalar.automergeDoc).numOps
    expect(scalarOps * 4).toBeLessThan(textOps)
    expect(scalar.doc.databases).toEqual(text.doc.databases)
  })

  it('reach readers as strings after a remote change, a sync, a restart, an adoption and at an earlier version', async () => {
    const a = await cluster({ 'host-1': SCALAR_STRINGS_FORMAT })
    const b = await open('b')
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince([]), options), undefined])
    const before = a.heads()
    await a.change({ op: 'test' }, d => { d.databases['db-1'] = record(1) as never })
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince(before), options), undefined])
    expect(storedAs(b.automergeDoc, ['databases', 'db-1', 'state'])).toBe('str')
    expect(b.doc.databases?.['db-1']).toEqual(record(1))
    expectPlain(b.doc)

    // The sync protocol's path.
    const c = await open('c')
    let sa = A.initSyncState()
    let sc = A.initSyncState()
    for (let round = 0; round < 10; round++) {
      const [nextA, msg] = A.generateSyncMessage(a.automergeDoc, sa)
      sa = nextA
      if (msg !== null) sc = c.applyRemote('a', (doc, options) => { const [d, s] = A.receiveSyncMessage(doc, sc, msg, options); return [d, s] })
      const [nextC, reply] = A.generateSyncMessage(c.automergeDoc, sc)
      sc = nextC
      if (reply !== null) sa = a.applyRemote('c', (doc, options) => { const [d, s] = A.receiveSyncMessage(doc, sa, reply, options); return [d, s] })
      if (msg === null && reply === null) break
    }
    expect(c.doc.databases?.['db-1']).toEqual(record(1))
    expectPlain(c.doc)

    const d = await open('d')
    await d.adopt(A.save(a.automergeDoc), 'a', doc => { expectPlain(doc) })
    expect(d.doc.databases?.['db-1']).toEqual(record(1))

    await close(a)
    const reopened = await open('a')
    expect(reopened.doc.databases?.['db-1']).toEqual(record(1))
    expectPlain(reopened.doc)
    expectPlain(reopened.viewAt(reopened.heads()))
    expect(reopened.readMerged(['databases', 'db-1'])?.value).toEqual(record(1))
  })

  it('merge with text written concurrently at the same key: one value shown, both values strings in the conflict', async () => {
    const a = await cluster({ 'host-1': SCALAR_STRINGS_FORMAT })
    const b = await open('b')
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince([]), options), undefined])
    await a.change({ op: 'test' }, d => { d.databases['db-1'] = record(1) as never })
    const shared = a.heads()
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince([]), options), undefined])
    // b as an older pgmesh would write it: text; a as scalar.
    const old = A.change(A.clone(b.automergeDoc), d => { (d.databases as Record<string, { state: string }>)['db-1']!.state = 'modifying' })
    await a.change({ op: 'test' }, d => { d.databases['db-1']!.state = 'failed' as never })
    expect(storedAs(old, ['databases', 'db-1', 'state'])).toBe('text')
    a.applyRemote('b', (doc, options) => [A.loadIncremental(doc, A.saveSince(old, shared), options), undefined])
    expect(['modifying', 'failed']).toContain(a.doc.databases?.['db-1']?.state)
    const merged = a.readMerged(['databases', 'db-1'])
    expect(merged?.conflicts.map(c => ({ path: c.path, values: [...c.values].sort() }))).toEqual([{ path: 'state', values: ['failed', 'modifying'] }])
    expectPlain(a.doc)
  })

  it('read as strings inside a change, through lists too, and written back as scalars', async () => {
    const a = await cluster({ 'host-1': SCALAR_STRINGS_FORMAT })
    await a.change({ op: 'test' }, d => { d.databases['db-1'] = record(1) as never })
    let seen: unknown[] = []
    await a.change({ op: 'test' }, d => {
      const db = d.databases['db-1'] as unknown as { state: string, spec: { nodes: Array<{ host_ids: string[] }> } }
      const hosts = db.spec.nodes[0]!.host_ids
      seen = [typeof db.state, db.state === 'available', hosts.includes('host-1'), hosts.indexOf('host-1'), [...hosts], hosts.map(h => typeof h), Object.values(db).filter(v => typeof v === 'string').length]
      hosts.push('host-2')
      hosts.splice(0, 1, 'host-3')
      db.state = `${db.state}!`
    })
    expect(seen).toEqual(['string', true, true, 0, ['host-1'], ['string'], 3])
    expect(a.doc.databases?.['db-1']).toMatchObject({ state: 'available!', spec: { nodes: [{ host_ids: ['host-3', 'host-2'] }] } })
    expect(storedAs(a.automergeDoc, ['databases', 'db-1', 'spec', 'nodes', 0, 'host_ids', 1])).toBe('str')
    expect(storedAs(a.automergeDoc, ['databases', 'db-1', 'spec', 'nodes', 0, 'host_ids', 0])).toBe('str')
    expectPlain(a.doc)
  })

  it('a generation rewrites old text as scalars once every host reads them, and as text while one does not', async () => {
    for (const upgraded of [true, false]) {
      const doc = A.change(A.init<Record<string, unknown>>(), d => {
        d.hosts = { 'host-1': { id: 'host-1', ...(upgraded ? { document_format: SCALAR_STRINGS_FORMAT } : {}) } }
        d.databases = { 'db-1': record(1) }
      })
      const next = startGeneration(doc as never, A.getHeads(doc))
      expect(storedAs(next, ['databases', 'db-1', 'state'])).toBe(upgraded ? 'str' : 'text')
      expect((next as Record<string, unknown>).databases).toEqual({ 'db-1': record(1) })
      expectPlain(next)
    }
  })

  it('reach readers as strings when one change inserts into a list before what it inserted earlier', async () => {
    const a = await cluster({ 'host-1': SCALAR_STRINGS_FORMAT })
    const b = await open('b')
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince([]), options), undefined])
    const before = a.heads()
    await a.change({ op: 'test' }, d => {
      d.databases['db-1'] = { list: ['x'] } as never
    })
    await a.change({ op: 'test' }, d => {
      const list = (d.databases['db-1'] as unknown as { list: string[] & { insertAt: (at: number, ...values: string[]) => void } }).list
      list.push('z')
      list.unshift('a')
      list.insertAt(1, 'b')
    })
    // Both changes reach b in one transition: its patches insert at indices the later ones shift.
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince(before), options), undefined])
    for (const state of [a, b]) {
      expect((state.doc.databases?.['db-1'] as unknown as { list: unknown[] }).list).toEqual(['a', 'b', 'x', 'z'])
      expectPlain(state.doc)
    }
  })

  it('leave Automerge\'s own functions working on the view', () => {
    let doc = A.from<Record<string, unknown>>({ m: { k: 'v' }, l: ['x'] })
    doc = A.change(doc, d => {
      const view = stringWriter(d, true)
      expect(A.getObjectId(view.m as object)).toBe(A.getObjectId(d.m as object))
      expect(Array.isArray(view.l)).toBe(true)
      expect(Object.keys(view.m as object)).toEqual(['k'])
      expect(JSON.stringify(view)).toBe('{"l":["x"],"m":{"k":"v"}}')
      delete (view.m as Record<string, unknown>).k
      ;(view as Record<string, unknown>).n = { nested: ['a', { b: 'c' }] }
    })
    expect(storedAs(doc, ['n', 'nested', 1, 'b'])).toBe('str')
    expect(doc.m).toEqual({})
  })
})
