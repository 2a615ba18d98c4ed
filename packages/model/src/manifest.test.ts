import { describe, expect, it } from 'vitest'
import {
  availableUpgrades, checkUpgrade, compareVersions, type CurrentVersion, defaultImage, EMBEDDED_MANIFEST, mergeManifests, parseManifest, unknownVersionIssues,
  type VersionManifest
} from './manifest.js'

const manifest: VersionManifest = {
  schema_version: 1,
  images: {
    postgres: [
      { postgres_version: '15.18', image: 'pgmesh/postgres:15.18', stability: 'stable' },
      { postgres_version: '15.20', image: 'pgmesh/postgres:15.20', stability: 'stable', default: true },
      { postgres_version: '15.21', image: 'pgmesh/postgres:15.21-rc', stability: 'dev' },
      { postgres_version: '16.4', image: 'pgmesh/postgres:16.4', stability: 'stable' },
      { postgres_version: '15.20', spock_version: '5.0.10', image: 'ghcr.io/pgedge/pgedge-postgres:15.20-spock5.0.10-standard-1', stability: 'stable' },
      { postgres_version: '15.20', spock_version: '6.0.0', image: 'ghcr.io/pgedge/pgedge-postgres:15.20-spock6.0.0-standard-1', stability: 'stable' }
    ]
  }
}
const on1518 = { postgresVersion: '15.18', spock: false }

describe('version manifest', () => {
  it('compares versions part by part, numerically', () => {
    expect(compareVersions('15.9', '15.18')).toBeLessThan(0)
    expect(compareVersions('15.20', '15.20')).toBe(0)
    expect(compareVersions('5.0.10', '5.0.9')).toBeGreaterThan(0)
  })

  it('lists stable, newer minors of the same major and extension as available upgrades, oldest first', () => {
    expect(availableUpgrades(manifest, on1518)).toEqual([{ postgres_version: '15.20', image: 'pgmesh/postgres:15.20' }])
    expect(availableUpgrades(manifest, { postgresVersion: '15.20', spock: false })).toEqual([])
    expect(availableUpgrades(manifest, { postgresVersion: '15.18', spockVersion: '5.0.4', spock: true })).toEqual([
      { postgres_version: '15.20', spock_version: '5.0.10', image: 'ghcr.io/pgedge/pgedge-postgres:15.20-spock5.0.10-standard-1' }
    ])
    // The same Postgres with a newer Spock minor is an upgrade too.
    expect(availableUpgrades(manifest, { postgresVersion: '15.20', spockVersion: '5.0.4', spock: true }).map(u => u.spock_version)).toEqual(['5.0.10'])
  })

  it('refuses each image the anchor refuses, saying why', () => {
    expect(checkUpgrade(manifest, on1518, 'pgmesh/postgres:15.20').postgres_version).toBe('15.20')
    const refusal = (image: string, current: CurrentVersion = on1518): string => {
      try {
        checkUpgrade(manifest, current, image)
      } catch (err) {
        expect((err as { name: string }).name).toBe('invalid_input')
        return (err as Error).message
      }
      throw new Error(`${image} was accepted`)
    }
    expect(refusal('pgmesh/postgres:99')).toBe('upgrade not available: image "pgmesh/postgres:99" is not in the version manifest')
    expect(refusal('pgmesh/postgres:15.21-rc')).toBe('upgrade not available: image "pgmesh/postgres:15.21-rc" is not stable (stability dev)')
    expect(refusal('pgmesh/postgres:16.4')).toMatch(/^upgrade not available: image "pgmesh\/postgres:16.4" provides PostgreSQL 16.4, another major version than the database's 15.18$/)
    expect(refusal('pgmesh/postgres:15.18')).toMatch(/^upgrade not available: .* 15.18, which is not newer than the database's 15.18$/)
    expect(refusal('pgmesh/postgres:15.18', { postgresVersion: '15.20', spock: false })).toMatch(/not newer/)
    expect(refusal('ghcr.io/pgedge/pgedge-postgres:15.20-spock5.0.10-standard-1')).toMatch(/replicates with Spock, the database with pglogical/)
    expect(refusal('ghcr.io/pgedge/pgedge-postgres:15.20-spock6.0.0-standard-1', { postgresVersion: '15.18', spockVersion: '5.0.4', spock: true }))
      .toMatch(/Spock 6.0.0, another major version than the database's 5.0.4/)
  })

  it('merges an operator file over the embedded list by image; its default wins', () => {
    const file = parseManifest({
      schema_version: 1,
      images: {
        postgres: [
          { postgres_version: '15.21', image: 'pgmesh/postgres:15.21', stability: 'stable', default: true },
          { postgres_version: '15.18', image: 'pgmesh/postgres:15.18', stability: 'dev' }
        ],
        postgrest: [{ version: '14.5' }]
      }
    })
    if (!file.ok) throw new Error(file.message)
    const merged = mergeManifests(EMBEDDED_MANIFEST, file.manifest)
    expect(merged.images.postgres.map(i => `${i.image} ${i.stability}${i.default === true ? ' default' : ''}`)).toEqual([
      'pgmesh/postgres:15.18 dev', 'pgmesh/postgres:15.20 stable', 'pgmesh/postgres:15.21 stable default'
    ])
    expect(defaultImage(merged)?.postgres_version).toBe('15.21')
    expect(defaultImage(EMBEDDED_MANIFEST)?.image).toBe('pgmesh/postgres:15.20')
  })

  it('names the field of a bad manifest file', () => {
    expect(parseManifest({ schema_version: 2, images: {} })).toMatchObject({ ok: false, message: expect.stringMatching(/^schema_version: /) })
    expect(parseManifest({ schema_version: 1, images: { postgres: [{ postgres_version: '15', image: 'x', stability: 'stable' }] } }))
      .toMatchObject({ ok: false, message: expect.stringMatching(/^images\.postgres\.0\.postgres_version: must be major\.minor/) })
  })

  it('lets an update set only postgres versions the manifest knows, and leaves unchanged ones alone', () => {
    const previous = { postgres_version: '15.3', nodes: [{ name: 'n1' }] }
    expect(unknownVersionIssues(manifest, { postgres_version: '15.3', nodes: [{ name: 'n1' }] }, previous)).toEqual([])
    expect(unknownVersionIssues(manifest, { postgres_version: '15.20', nodes: [{ name: 'n1', postgres_version: '15.19' }] }, previous)).toEqual([
      { path: 'nodes[0].postgres_version', message: 'postgres version 15.19 is not in the version manifest (known: 15.18, 15.20, 15.21, 16.4)' }
    ])
  })
})
