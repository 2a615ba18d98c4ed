import { describe, expect, it } from 'vitest'
import { cachedAsync } from './cached-async.js'

describe('cachedAsync', () => {
  it('loads once per key, shares a load in flight, and tries again after a failure', async () => {
    const loads: string[] = []
    let fail = true
    const lengthOf = cachedAsync(async (word: string) => {
      loads.push(word)
      await new Promise(resolve => setTimeout(resolve, 5))
      if (word === 'flaky' && fail) throw new Error('not yet')
      return word.length
    })
    expect(await Promise.all([lengthOf('abc'), lengthOf('abc'), lengthOf('de')])).toEqual([3, 3, 2])
    expect(await lengthOf('abc')).toBe(3)
    await expect(lengthOf('flaky')).rejects.toThrow('not yet')
    fail = false
    expect(await lengthOf('flaky')).toBe(5)
    expect(loads).toEqual(['abc', 'de', 'flaky', 'flaky'])
  })

  it('keys by keyOf', async () => {
    let loads = 0
    const load = cachedAsync(async (input: { id: string, label: string }) => { loads++; return input.label }, input => input.id)
    expect(await load({ id: 'x', label: 'first' })).toBe('first')
    expect(await load({ id: 'x', label: 'second' })).toBe('first')
    expect(loads).toBe(1)
  })
})
