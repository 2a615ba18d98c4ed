import { describe, expect, it } from 'vitest'
import { removedHostActions } from './removed-host.js'

describe('removedHostActions', () => {
  it('removes every local instance, with its database when the applied record knows it', () => {
    const local = [
      { instanceId: 'shop-n1-aaaa1111', state: 'running' as const, port: 5432, postgresVersion: '17.6' },
      { instanceId: 'shop-n3-aaaa1111', state: 'stopped' as const, port: 5433, postgresVersion: '17.6' },
      { instanceId: 'orphan-n1-aaaa1111', state: 'crashed' as const, port: 5434, postgresVersion: '17.6' }
    ]
    const applied = [
      { instanceId: 'shop-n1-aaaa1111', databaseId: 'shop', nodeName: 'n1', generation: 3, specHash: 'h1' },
      { instanceId: 'shop-n3-aaaa1111', databaseId: 'shop', nodeName: 'n3', generation: 3, specHash: 'h3' }
    ]
    expect(removedHostActions(local, applied)).toEqual([
      { kind: 'remove-instance', instanceId: 'shop-n1-aaaa1111', databaseId: 'shop' },
      { kind: 'remove-instance', instanceId: 'shop-n3-aaaa1111', databaseId: 'shop' },
      { kind: 'remove-instance', instanceId: 'orphan-n1-aaaa1111', databaseId: undefined }
    ])
    expect(removedHostActions([], applied)).toEqual([])
  })
})
