import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EMBEDDED_MANIFEST } from '@pgmesh/model'
import { ManifestSource } from './manifest-source.js'

const log = pino({ level: 'silent' })
let dir: string

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'pgmesh-manifest-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('ManifestSource', () => {
  it('is the embedded manifest without a file', async () => {
    expect((await ManifestSource.open(undefined, log)).current()).toBe(EMBEDDED_MANIFEST)
  })

  it('merges the operator file over the embedded one', async () => {
    const path = join(dir, 'ok.json')
    await writeFile(path, JSON.stringify({ schema_version: 1, images: { postgres: [{ postgres_version: '15.21', image: 'pgmesh/postgres:15.21', stability: 'stable' }] } }))
    const images = (await ManifestSource.open(path, log)).current().images.postgres.map(i => i.image)
    expect(images).toEqual(['pgmesh/postgres:15.18', 'pgmesh/postgres:15.20', 'pgmesh/postgres:15.21'])
  })

  it('stops the start with the file and the field when the file is missing or wrong', async () => {
    await expect(ManifestSource.open(join(dir, 'missing.json'), log)).rejects.toThrow(/no such file/)
    const path = join(dir, 'bad.json')
    await writeFile(path, JSON.stringify({ schema_version: 1, images: { postgres: [{ postgres_version: '15.21', image: 'x', stability: 'beta' }] } }))
    await expect(ManifestSource.open(path, log)).rejects.toThrow(`version manifest ${path}: images.postgres.0.stability: `)
  })
})
