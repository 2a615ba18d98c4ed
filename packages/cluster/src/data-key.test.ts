import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DataKey, isSealed, SecretEnvelopeError } from './data-key.js'
import { openSecrets, sealSecrets, secretMarker, withoutSecrets } from './spec-secrets.js'

describe('DataKey envelopes', () => {
  const key = DataKey.generate()

  it('seals the same path and plaintext to the same envelope, and opens it', () => {
    const a = key.seal('database_users/app/password', 's3cret')
    expect(a).toBe(key.seal('database_users/app/password', 's3cret'))
    expect(a.startsWith(`pgmesh:enc:v1:${key.id}:`)).toBe(true)
    expect(a).not.toContain('s3cret')
    expect(key.open(a)).toBe('s3cret')
  })

  it('seals differently for another path, another plaintext or another key', () => {
    const a = key.seal('database_users/app/password', 's3cret')
    expect(key.seal('database_users/other/password', 's3cret')).not.toBe(a)
    expect(key.seal('database_users/app/password', 's3cret2')).not.toBe(a)
    expect(DataKey.generate().seal('database_users/app/password', 's3cret')).not.toBe(a)
  })

  it('detects tampering', () => {
    const a = key.seal('p', 'a fairly long secret value')
    const body = Buffer.from(a.split(':').at(-1) ?? '', 'base64url')
    body[14] = (body[14] ?? 0) ^ 1
    const tampered = a.slice(0, a.lastIndexOf(':') + 1) + body.toString('base64url')
    expect(() => key.open(tampered)).toThrow(/failed authentication/)
    expect(() => key.open('pgmesh:enc:v1:zz:abc')).toThrow(SecretEnvelopeError)
  })

  it('names both keys when opened with the wrong one', () => {
    const other = DataKey.generate()
    expect(() => other.open(key.seal('p', 'x'))).toThrow(`encrypted with data key ${key.id}, but this host holds data key ${other.id}`)
  })

  it('is derived the same from the same cluster key (clusters from before data keys), and differently from another', () => {
    const secret = Buffer.alloc(32, 1)
    expect(DataKey.derivedFromClusterKey(secret).toString()).toBe(DataKey.derivedFromClusterKey(Buffer.from(secret)).toString())
    expect(DataKey.derivedFromClusterKey(secret).toString()).not.toBe(DataKey.derivedFromClusterKey(Buffer.alloc(32, 2)).toString())
    expect(DataKey.derivedFromClusterKey(secret).toString()).not.toBe(secret.toString('hex'))
  })

  it('round-trips through its file, mode 0600', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgmesh-datakey-'))
    try {
      await key.save(join(dir, 'data.key'))
      expect((await stat(join(dir, 'data.key'))).mode & 0o777).toBe(0o600)
      expect((await DataKey.load(join(dir, 'data.key'))).toString()).toBe(key.toString())
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('spec secrets', () => {
  const key = DataKey.generate()
  const repo = { type: 's3', s3_bucket: 'bkt', s3_key: 'AKIA-KEY', s3_key_secret: 'S3-SECRET' }
  const spec = {
    database_name: 'app',
    database_users: [{ username: 'app', password: 'pw-one' }, { username: 'ro' }],
    backup_config: { repositories: [repo] },
    restore_config: { source_database_id: 'x', repository: { ...repo } },
    nodes: [{ name: 'n1', host_ids: ['h'], backup_config: { repositories: [{ type: 'gcs', gcs_key: 'GCS-KEY' }] } }],
    services: [{ service_id: 'mcp', config: { llm_api_key: 'sk-123', nested: [{ password: 'deep' }], model: 'x', init_users: [{ u: 'a', p: 'b' }] } }]
  }
  const plaintexts = ['pw-one', 'AKIA-KEY', 'S3-SECRET', 'GCS-KEY', 'sk-123', 'deep', '"p":"b"']

  it('seals every secret, leaves the rest, and opens back to the same spec', () => {
    const sealed = sealSecrets(spec, key)
    const text = JSON.stringify(sealed)
    for (const p of plaintexts) expect(text).not.toContain(p)
    expect(text).toContain('"model":"x"')
    expect(isSealed((sealed.database_users as any)[0].password)).toBe(true)
    expect((sealed.database_users as any)[1].password).toBeUndefined()
    expect(openSecrets(sealed, key)).toEqual({ spec, problems: [] })
    expect(sealSecrets(spec, key)).toEqual(sealed)
  })

  it('reports by path, never by value, what it cannot open', () => {
    const other = DataKey.generate()
    const opened = openSecrets(sealSecrets(spec, key), other)
    expect(opened.problems).toContain(`database_users/app/password: cannot decrypt: encrypted with data key ${key.id}, but this host holds data key ${other.id}`)
    expect(opened.problems).toHaveLength(9)
    for (const p of plaintexts) expect(opened.problems.join()).not.toContain(p)
    expect((opened.spec.database_users as any)[0].password).toBeUndefined()
    expect(openSecrets(sealSecrets(spec, key), undefined).problems[0]).toBe('database_users/app/password: cannot decrypt: this host has no data key')
  })

  it('drops every secret for a deleted database', () => {
    const text = JSON.stringify(withoutSecrets(sealSecrets(spec, key)))
    expect(text).not.toContain('pgmesh:enc')
    expect(text).toContain('"model":"x"')
  })

  it('marks a secret by a hash of its ciphertext only', () => {
    const sealed = key.seal('p', 'pw-one')
    expect(secretMarker(sealed)).toMatch(/^\(secret [0-9a-f]{8}\)$/)
    expect(secretMarker(sealed)).not.toBe(secretMarker(key.seal('p', 'pw-two')))
    expect(secretMarker('plain')).toBe('(secret)')
  })
})
