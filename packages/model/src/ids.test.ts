import { describe, expect, it } from 'vitest'
import { instanceId, isIdentifier, isUuid, newTaskId } from './ids.js'

describe('identifiers', () => {
  it('accepts the anchor identifier shape and rejects the rest', () => {
    for (const ok of ['a', 'host-1', 'storefront', 'a'.repeat(36), '0db']) expect(isIdentifier(ok), ok).toBe(true)
    for (const bad of ['', '-a', 'a-', 'a--b', 'A', 'a_b', 'a'.repeat(37), 'a.b']) expect(isIdentifier(bad), bad).toBe(false)
  })

  it('derives instance ids exactly as the anchor does', () => {
    expect(instanceId('storefront', 'n1', 'host-1')).toBe('storefront-n1-689qacsi')
    expect(instanceId('storefront', 'n1', 'host-2')).toBe('storefront-n1-9ptayhma')
    expect(instanceId('storefront', 'n1', 'host-3')).toBe('storefront-n1-ant97dj4')
  })

  it('makes time-ordered UUIDv7 task ids', () => {
    const a = newTaskId()
    const b = newTaskId()
    expect(isUuid(a)).toBe(true)
    expect(a[14]).toBe('7')
    expect(a < b).toBe(true)
  })
})
