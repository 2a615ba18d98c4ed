import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InvalidInputError } from '@pgmesh/model'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { binDir, DEBIAN_POSTGRES_ROOT, installedPostgresVersions, newestPostgresVersion, replicationLibrary, resolveMajor } from './binaries.js'

let root: string

beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'pgmesh-binaries-')) })
afterEach(async () => { await rm(root, { recursive: true, force: true }) })

/** A stand-in `postgres` that prints `version` for --version, as the real one does. */
async function fakePostgres (bin: string, version: string): Promise<void> {
  await mkdir(bin, { recursive: true })
  await writeFile(join(bin, 'postgres'), `#!/bin/sh\necho "postgres (PostgreSQL) ${version}"\n`)
  await chmod(join(bin, 'postgres'), 0o755)
}

async function touch (path: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true })
  await writeFile(path, '')
}

describe("Debian's layout: <root>/<major>/{bin,lib}", () => {
  beforeEach(async () => {
    await fakePostgres(join(root, '15', 'bin'), '15.20 (Debian 15.20-0+deb12u1)')
    await fakePostgres(join(root, '17', 'bin'), '17.6 (Debian 17.6-1)')
    await mkdir(join(root, '16', 'lib'), { recursive: true }) // a leftover without binaries is not an installation
    await touch(join(root, '15', 'lib', 'pglogical.so'))
    await touch(join(root, '17', 'lib', 'spock.so'))
    await touch(join(root, '17', 'lib', 'pglogical.so'))
  })

  it('picks the newest major, or the asked one when installed', async () => {
    expect(await resolveMajor(root, undefined)).toBe(17)
    expect(await resolveMajor(root, '15.18')).toBe(15)
    const missing = resolveMajor(root, '16')
    await expect(missing).rejects.toBeInstanceOf(InvalidInputError)
    await expect(missing).rejects.toThrow('PostgreSQL 16 is not installed on this host (installed: 15, 17)')
    expect(await newestPostgresVersion(root)).toBe('17.6')
  })

  it("finds each major's binaries and replication library, preferring spock", async () => {
    expect(binDir(root, 15)).toBe(join(root, '15', 'bin'))
    expect(binDir(root, 17)).toBe(join(root, '17', 'bin'))
    expect(await replicationLibrary(root, 15)).toBe('pglogical')
    expect(await replicationLibrary(root, 17)).toBe('spock')
  })
})

describe('a single installation: <root>/bin and <root>/lib (pgEdge)', () => {
  beforeEach(async () => {
    await fakePostgres(join(root, 'bin'), '16.10')
  })

  it('has the one major its postgres --version names', async () => {
    expect(await resolveMajor(root, undefined)).toBe(16)
    expect(await resolveMajor(root, '16.4')).toBe(16)
    await expect(resolveMajor(root, '15')).rejects.toThrow('PostgreSQL 15 is not installed on this host (installed: 16)')
    expect(await newestPostgresVersion(root)).toBe('16.10')
    expect(binDir(root, 16)).toBe(join(root, 'bin'))
  })

  it('finds the replication library in lib/ or lib/postgresql/', async () => {
    await expect(replicationLibrary(root, 16)).rejects.toThrow(`neither spock nor pglogical is installed for PostgreSQL 16 under ${root}`)
    await touch(join(root, 'lib', 'pglogical.so'))
    expect(await replicationLibrary(root, 16)).toBe('pglogical')
    await touch(join(root, 'lib', 'postgresql', 'spock.so'))
    expect(await replicationLibrary(root, 16)).toBe('spock')
  })
})

describe('no installation', () => {
  it('says where it looked', async () => {
    await expect(resolveMajor(root, undefined)).rejects.toThrow(`no PostgreSQL installed under ${root}`)
    expect(await newestPostgresVersion(root)).toBeUndefined()
  })

  it('refuses a postgres whose --version names no PostgreSQL version, rather than guessing a major', async () => {
    await mkdir(join(root, 'bin'))
    await writeFile(join(root, 'bin', 'postgres'), '#!/bin/sh\necho "something else"\n', { mode: 0o755 })
    await expect(resolveMajor(root, undefined)).rejects.toThrow('--version printed no PostgreSQL version: something else')
  })
})

describe('installedPostgresVersions', () => {
  it("reads each major's minor from its binary every time, so a package upgrade shows at once", async () => {
    await fakePostgres(join(root, '15', 'bin'), '15.18 (Debian 15.18-0+deb12u1)')
    await fakePostgres(join(root, '17', 'bin'), '17.6 (Debian 17.6-1)')
    expect(await installedPostgresVersions(root)).toEqual(['15.18', '17.6'])
    await fakePostgres(join(root, '15', 'bin'), '15.20 (Debian 15.20-0+deb12u1)')
    expect(await installedPostgresVersions(root)).toEqual(['15.20', '17.6'])
  })

  it("is what this machine's Debian packages provide", async () => {
    const { execFileSync } = await import('node:child_process')
    const real = /\(PostgreSQL\) (\d+\.\d+)/.exec(execFileSync(join(DEBIAN_POSTGRES_ROOT, '15', 'bin', 'postgres'), ['--version'], { encoding: 'utf8' }))?.[1]
    expect(real).toBeDefined()
    expect(await installedPostgresVersions(DEBIAN_POSTGRES_ROOT)).toContain(real)
  })
})
