import * as A from '@automerge/automerge'
import { describe, expect, it } from 'vitest'
import { logicalPatches } from './buckets.js'
import { statesPerTest } from './states.fixture.js'

/** The distinct `root/key` prefixes of the patches' paths: what a reader of `diff` invalidates by. */
function touched (patches: A.Patch[]): string[] {
  return [...new Set(patches.map(p => p.path.slice(0, 2).join('/')))].sort()
}

describe('ClusterState.diff', () => {
  const { open } = statesPerTest('state')

  it('names the paths each change between two versions touched, local or remote, however far apart the versions', async () => {
    const a = await open('a')
    const b = await open('b')
    await a.initialize('c1')
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince([]), options), undefined])
    const versions = [a.heads()]
    for (let i = 0; i < 6; i++) {
      await a.change({ op: 'test', entity: `db${i}` }, d => { d.databases[`db${i}`] = { spec: { n: i } } as never })
      versions.push(a.heads())
      const before = b.heads()
      await b.change({ op: 'test' }, d => { d.tasks[`t${i}`] = { status: 'pending' } as never })
      // b's change reaches a as gossip does: a remote transition with its patches.
      a.applyRemote('b', (doc, options) => [A.loadIncremental(doc, b.saveSince(before), options), undefined])
      versions.push(a.heads())
    }
    await a.change({ op: 'test' }, d => { delete d.databases.db0 })
    versions.push(a.heads())
    const step = (k: number): string[] => touched(logicalPatches(A.diff(a.automergeDoc, versions[k]!, versions[k + 1]!)))
    for (let from = 0; from < versions.length; from++) {
      for (let to = from; to < versions.length; to++) {
        const paths = touched(a.diff(versions[from]!, versions[to]!))
        // Each step's paths, so also every path of the net diff (db0, created and deleted, is in the steps only).
        expect(paths).toEqual([...new Set(Array.from({ length: to - from }, (_, k) => step(from + k)).flat())].sort())
        expect(paths).toEqual(expect.arrayContaining(touched(logicalPatches(A.diff(a.automergeDoc, versions[from]!, versions[to]!)))))
      }
    }
  })

  it('falls back to Automerge\'s diff for a remote change applied without the patch callback', async () => {
    const a = await open('a')
    const b = await open('b')
    await a.initialize('c1')
    b.applyRemote('a', doc => [A.loadIncremental(doc, a.saveSince([])), undefined])
    const before = b.heads()
    await a.change({ op: 'test' }, d => { d.databases.x = { spec: {} } as never })
    b.applyRemote('a', doc => [A.loadIncremental(doc, a.saveSince(before)), undefined])
    expect(touched(b.diff(before, b.heads()))).toEqual(['databases/x'])
    expect(touched(b.diff([], b.heads()))).toEqual(touched(logicalPatches(A.diff(b.automergeDoc, [], b.heads()))))
  })
})

describe('ClusterState memory', () => {
  const { open } = statesPerTest('state-memory')

  /** The objects of `doc` whose Automerge metadata still holds a transition's patches (its cache for `A.diff`). */
  function holdingPatches (value: unknown, path = 'root', found: string[] = []): string[] {
    if (typeof value !== 'object' || value === null) return found
    const meta = (value as Record<symbol, { mostRecentPatch?: unknown } | undefined>)[Symbol.for('_am_meta')]
    if (meta?.mostRecentPatch !== undefined) found.push(path)
    for (const [key, child] of Object.entries(value)) holdingPatches(child, `${path}/${key}`, found)
    return found
  }

  it('keeps no patches of a change on the records it made, local or remote', async () => {
    const a = await open('a')
    const b = await open('b')
    await a.initialize('c1')
    b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince([]), options), undefined])
    for (let i = 0; i < 3; i++) {
      const before = a.heads()
      await a.change({ op: 'test', entity: `db${i}` }, d => { d.databases[`db${i}`] = { spec: { nodes: [{ name: 'n1' }] } } as never })
      b.applyRemote('a', (doc, options) => [A.loadIncremental(doc, a.saveSince(before), options), undefined])
    }
    expect(a.doc.databases?.db2).toBeDefined()
    expect(b.doc.databases?.db2).toBeDefined()
    expect(holdingPatches(a.automergeDoc)).toEqual([])
    expect(holdingPatches(b.automergeDoc)).toEqual([])
  })
})
