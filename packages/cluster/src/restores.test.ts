import type { DatabaseSpec } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { withoutBackups } from './restores.js'

const backup = { repositories: [{ id: 'r', type: 'posix' as const, base_path: '/b' }] }
const own = { repositories: [{ id: 'own', type: 'posix' as const, base_path: '/o' }] }

describe('the spec an in-place restore leaves', () => {
  const spec: DatabaseSpec = {
    database_name: 'db',
    backup_config: backup,
    nodes: [{ name: 'n1', host_ids: ['h1'] }, { name: 'n2', host_ids: ['h2'], backup_config: own }, { name: 'n3', host_ids: ['h3'] }]
  }

  it('drops the restored nodes\' backup_config; the others keep theirs, a database-level one moved onto them', () => {
    const out = withoutBackups(spec, new Set(['n1']))
    expect(out.backup_config).toBeUndefined()
    expect(out.nodes.map(n => n.backup_config)).toEqual([undefined, own, backup])
    expect(spec.backup_config).toBe(backup)
  })

  it('restoring every node leaves no backup_config at all', () => {
    const out = withoutBackups(spec, new Set(['n1', 'n2', 'n3']))
    expect(out.backup_config).toBeUndefined()
    expect(out.nodes.every(n => n.backup_config === undefined)).toBe(true)
  })
})
