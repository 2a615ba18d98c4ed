import * as A from '@automerge/automerge'
import { describe, expect, it } from 'vitest'
import { materializeMap, readMerged } from './merged-read.js'

type Doc = Record<string, any>

/** Two replicas of one document that each create `db.primaries` (two levels) with their own entries, then merge. */
function concurrentlyCreated (): { merged: A.Doc<Doc>, base: A.Heads } {
  const base = A.change(A.init<Doc>(), d => { d.db = { id: 'db' } })
  const a = A.change(A.clone(base), d => { d.db.primaries = { n1: { 1: 'i-a' } } })
  const b = A.change(A.clone(base), d => { d.db.primaries = { n1: { 2: 'i-b' }, n2: { 1: 'i-c' } } })
  return { merged: A.merge(a, b), base: A.getHeads(base) }
}

describe('readMerged', () => {
  it('shows both sides of a map created concurrently, where a plain read shows one', () => {
    const { merged, base } = concurrentlyCreated()
    expect(Object.keys(merged.db.primaries.n1)).toHaveLength(1)
    expect(readMerged(merged, ['db'])).toEqual({ value: { id: 'db', primaries: { n1: { 1: 'i-a', 2: 'i-b' }, n2: { 1: 'i-c' } } }, conflicts: [] })
    expect(readMerged(merged, ['db'], base)?.value).toEqual({ id: 'db' })
    expect(readMerged(merged, ['nothing'])).toBeUndefined()
  })

  it('reports a leaf both sides set to different values, the shown value first', () => {
    const base = A.change(A.init<Doc>(), d => { d.db = {} })
    const a = A.change(A.clone(base), d => { d.db.conf = { work_mem: '8MB', same: 'x' } })
    const b = A.change(A.clone(base), d => { d.db.conf = { work_mem: '16MB', same: 'x' } })
    const read = readMerged(A.merge(a, b), ['db'])
    expect(read?.conflicts).toHaveLength(1)
    expect(read?.conflicts[0]?.path).toBe('conf.work_mem')
    expect([...read?.conflicts[0]?.values ?? []].sort()).toEqual(['16MB', '8MB'])
    expect(read?.value).toEqual({ conf: { work_mem: read?.conflicts[0]?.values[0], same: 'x' } })
  })
})

describe('materializeMap', () => {
  it('replaces concurrently created maps by one holding both, so a plain read shows everything', () => {
    const { merged } = concurrentlyCreated()
    const next = A.change(merged, d => {
      const primaries = materializeMap(d, d.db, 'primaries')
      materializeMap(d, primaries, 'n3')[1] = 'i-d'
    })
    expect(A.getConflicts(next.db, 'primaries')).toBeUndefined()
    expect(JSON.parse(JSON.stringify(next.db.primaries))).toEqual({ n1: { 1: 'i-a', 2: 'i-b' }, n2: { 1: 'i-c' }, n3: { 1: 'i-d' } })
  })
})
