import { describe, expect, it } from 'vitest'
import { chooseImage } from './image-policy.js'

describe('chooseImage', () => {
  const base = { defaultImage: undefined, allowedRepositories: undefined, major: 15 }

  it("takes the host's default when the database names no image", () => {
    expect(chooseImage({ ...base, specImage: undefined })).toBe('pgmesh/postgres:15')
    expect(chooseImage({ ...base, specImage: undefined, defaultImage: 'ghcr.io/pgedge/pgedge-postgres:17-spock5' })).toBe('ghcr.io/pgedge/pgedge-postgres:17-spock5')
  })

  it("lets a database pick another tag or digest of the default image's repository", () => {
    expect(chooseImage({ ...base, specImage: 'pgmesh/postgres:16' })).toBe('pgmesh/postgres:16')
    const digest = `pgmesh/postgres@sha256:${'a'.repeat(64)}`
    expect(chooseImage({ ...base, specImage: digest })).toBe(digest)
  })

  // Attack (issue 16, finding 4): any image, run by a root daemon holding the Docker socket.
  it('refuses any other image, unless the host allows its repository', () => {
    expect(() => chooseImage({ ...base, specImage: 'evil/rootkit:latest' })).toThrow(/image "evil\/rootkit:latest" is not allowed on this host: its repository must be pgmesh\/postgres/)
    expect(() => chooseImage({ ...base, specImage: 'registry.example:5000/pgmesh/postgres:15' })).toThrow(/not allowed/)
    expect(chooseImage({ ...base, specImage: 'registry.example:5000/pg:17', allowedRepositories: ['registry.example:5000/pg'] })).toBe('registry.example:5000/pg:17')
  })

  it("allows the repositories of the host's version manifest", () => {
    const manifestRepositories = ['ghcr.io/pgedge/pgedge-postgres']
    expect(chooseImage({ ...base, specImage: 'ghcr.io/pgedge/pgedge-postgres:15.20-spock5.0.10-standard-1', manifestRepositories }))
      .toBe('ghcr.io/pgedge/pgedge-postgres:15.20-spock5.0.10-standard-1')
    expect(chooseImage({ ...base, specImage: 'pgmesh/postgres:15.20', manifestRepositories })).toBe('pgmesh/postgres:15.20')
    expect(() => chooseImage({ ...base, specImage: 'evil/rootkit:latest', manifestRepositories })).toThrow(/its repository must be pgmesh\/postgres or ghcr.io\/pgedge\/pgedge-postgres/)
  })
})
