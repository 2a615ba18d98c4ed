import * as A from '@automerge/automerge'
import { describe, expect, it } from 'vitest'
import { BUCKET_COUNT, BUCKETED_FORMAT, bucketOf, holdsFlatToRewrite, isBucketed } from './buckets.js'
import type { ClusterState } from './cluster-state.js'
import { startGeneration } from './generation.js'
import { initializeFlat, statesPerTest } from './states.fixture.js'

type Tree = Record<string, any>

/** Where Automerge itself keeps record `id` of `collection`: the bucket's key, or 'flat'. */
function storedIn (state: ClusterState, collection: 'database_buckets' | 'task_buckets', id: string): string | undefined {
  const raw = state.automergeDoc as Tree
  if (!isBucketed(raw)) return (collection === 'database_buckets' ? raw.databases : raw.tasks)?.[id] === undefined ? undefined : 'flat'
  return Object.entries(raw[collection] as Tree).find(([, bucket]) => (bucket as Tree)[id] !== undefined)?.[0]
}

function sync (from: ClusterState, to: ClusterState): void {
  to.applyRemote('peer', doc => [A.merge(doc, A.clone(from.automergeDoc)), undefined])
}

describe('bucketed collections', () => {
  const { open, close } = statesPerTest('buckets')

  it('keep a new cluster\'s records in their id\'s bucket, shown to readers and writers as flat maps', async () => {
    const a = await open('a')
    await a.initialize('c1')
    expect(Object.keys((a.automergeDoc as Tree).database_buckets)).toHaveLength(BUCKET_COUNT)
    expect(Object.keys((a.automergeDoc as Tree).task_buckets)).toHaveLength(BUCKET_COUNT)
    const before = a.heads()
    for (const id of ['db-b', 'db-a', 'db-c']) {
      await a.change({ op: 'test', entity: id }, d => {
        d.databases[id] = { id, spec: { n: 1 } } as never
        d.tasks[`t-${id}`] = { task_id: `t-${id}`, status: 'pending' } as never
      })
    }
    expect(storedIn(a, 'database_buckets', 'db-a')).toBe(bucketOf('db-a'))
    expect(storedIn(a, 'task_buckets', 't-db-a')).toBe(bucketOf('t-db-a'))
    expect((a.automergeDoc as Tree).databases).toBeUndefined()

    // Readers: a plain map, keys in order, as Automerge shows a map.
    const { databases, tasks } = a.doc
    expect(Object.keys(databases ?? {})).toEqual(['db-a', 'db-b', 'db-c'])
    expect(databases?.['db-a']).toEqual({ id: 'db-a', spec: { n: 1 } })
    expect('db-a' in (databases ?? {})).toBe(true)
    expect(databases?.['nothing']).toBeUndefined()
    expect(Object.values(tasks ?? {}).map(t => t.task_id)).toEqual(['t-db-a', 't-db-b', 't-db-c'])
    expect(JSON.parse(JSON.stringify(a.doc))).toMatchObject({ databases: { 'db-a': { id: 'db-a' } }, tasks: { 't-db-a': { status: 'pending' } } })
    expect(Object.keys(a.doc)).not.toContain('database_buckets')
    expect(() => { (databases as Tree)['db-x'] = {} }).toThrow()

    // Writers: update and delete find the record in its bucket; patches name the flat paths.
    await a.change({ op: 'test' }, d => {
      (d.databases['db-a'] as unknown as Tree).spec.n = 2
      delete d.databases['db-b']
      expect(Object.keys(d.databases)).toEqual(['db-a', 'db-c'])
      expect('db-c' in d.databases).toBe(true)
    })
    expect(Object.keys(a.doc.databases ?? {})).toEqual(['db-a', 'db-c'])
    expect(a.doc.databases?.['db-a']).toEqual({ id: 'db-a', spec: { n: 2 } })
    expect([...new Set(a.diff(before, a.heads()).map(p => p.path.slice(0, 2).join('/')))].sort())
      .toEqual(['databases/db-a', 'databases/db-b', 'databases/db-c', 'tasks/t-db-a', 'tasks/t-db-b', 'tasks/t-db-c'])
    expect(a.readMerged(['databases', 'db-a'])?.value).toEqual({ id: 'db-a', spec: { n: 2 } })
    expect(Object.keys(a.readMerged(['tasks'])?.value ?? {})).toEqual(['t-db-a', 't-db-b', 't-db-c'])
    expect(a.viewAt(before).databases).toEqual({})
  })

  it('merge records that replicas created apart, and show one record created twice as a conflict', async () => {
    const [a, b] = [await open('a'), await open('b')]
    await a.initialize('c1')
    sync(a, b)
    // Ids in one bucket, from two replicas: the bucket existed on both, so neither replica's record is hidden.
    const ids = Array.from({ length: 400 }, (_, i) => `db-${i}`)
    const [x, y] = ids.filter(id => bucketOf(id) === bucketOf('db-0')).slice(1) as [string, string]
    await a.change({ op: 'test' }, d => { d.databases[x] = { id: x } as never; d.databases.same = { id: 'same', by: 'a' } as never })
    await b.change({ op: 'test' }, d => { d.databases[y] = { id: y } as never; d.databases.same = { id: 'same', by: 'b' } as never })
    sync(b, a)
    sync(a, b)
    expect(Object.keys(a.doc.databases ?? {}).sort()).toEqual([x, y, 'same'].sort())
    expect(a.doc.databases).toEqual(b.doc.databases)
    expect(a.mayHoldConcurrentValues(['databases'])).toBe(true)
    expect(a.recordConflict('databases', 'same')?.values.map(v => (v as Tree).by).sort()).toEqual(['a', 'b'])
    expect(a.recordConflict('databases', x)).toBeUndefined()
  })

  it('leave a flat document flat until every host reads them; then its next generation writes them, and edits made apart replay into them', async () => {
    const [a, b] = [await open('a'), await open('b')]
    initializeFlat(a, 'c1')
    await a.change({ op: 'test' }, d => {
      d.hosts.a = { id: 'a', document_format: BUCKETED_FORMAT } as never
      d.hosts.b = { id: 'b', document_format: 2 } as never
      d.databases.db = { id: 'db', spec: { conf: { a: '1' } } } as never
      d.tasks.t = { task_id: 't', status: 'completed' } as never
    })
    expect(storedIn(a, 'database_buckets', 'db')).toBe('flat')
    expect(holdsFlatToRewrite(a.automergeDoc)).toBe(false)
    sync(a, b)

    // b upgrades; a genesis from then on is bucketed, and the same from every host.
    await a.change({ op: 'test' }, d => { (d.hosts.b as Tree).document_format = BUCKETED_FORMAT })
    expect(holdsFlatToRewrite(a.automergeDoc)).toBe(true)
    sync(a, b)
    const frontier = a.heads()
    // b edits after the frontier, before it hears of the generation.
    await b.change({ op: 'test' }, d => { (d.databases.db as unknown as Tree).spec.conf.b = '2'; d.tasks.u = { task_id: 'u', status: 'pending' } as never })
    const genesis = startGeneration(a.automergeDoc, frontier)
    expect(A.getHeads(startGeneration(b.automergeDoc, frontier))).toEqual(A.getHeads(genesis))
    expect(isBucketed(genesis)).toBe(true)
    const flatBefore = a.doc
    await a.enterGeneration(genesis)
    expect(storedIn(a, 'database_buckets', 'db')).toBe(bucketOf('db'))
    expect(a.doc.databases).toEqual(flatBefore.databases)
    expect(a.doc.tasks).toEqual(flatBefore.tasks)
    expect(holdsFlatToRewrite(a.automergeDoc)).toBe(false)

    expect(await b.enterGeneration(genesis)).toBe(1)
    expect(storedIn(b, 'task_buckets', 'u')).toBe(bucketOf('u'))
    sync(b, a)
    expect(a.doc.databases?.db).toEqual({ id: 'db', spec: { conf: { a: '1', b: '2' } } })
    expect(Object.keys(a.doc.tasks ?? {})).toEqual(['t', 'u'])
    // A later generation stays bucketed.
    expect(isBucketed(startGeneration(a.automergeDoc, a.heads()))).toBe(true)
  })

  it('refuse a document laid out in a newer format than this version reads: at open, adoption and a generation', async () => {
    const a = await open('a')
    await a.initialize('c1')
    expect(a.doc.cluster?.document_format).toBe(BUCKETED_FORMAT)
    const newer = startGeneration(a.automergeDoc, a.heads())
    const future = A.change(A.clone(newer), d => { (d.cluster as Tree).document_format = BUCKETED_FORMAT + 1 })
    const refusal = /laid out in cluster document format 4, and this pgmesh reads formats up to 3/
    await expect(a.enterGeneration(future)).rejects.toThrow(refusal)
    expect(a.doc.generation).toBeUndefined()
    const b = await open('b')
    await expect(b.adopt(A.save(future), 'a', () => {})).rejects.toThrow(refusal)
    expect(b.initialized).toBe(false)
    await a.enterGeneration(newer)
    await a.change({ op: 'test' }, d => { (d.cluster as Tree).document_format = BUCKETED_FORMAT + 1 })
    await close(a)
    await expect(open('a')).rejects.toThrow(refusal)
  })
})
