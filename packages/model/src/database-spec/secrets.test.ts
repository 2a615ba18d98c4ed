import { describe, expect, it } from 'vitest'
import type { DatabaseSpec } from './schemas.js'
import { isSensitiveConfigKey, mergeSecrets, redactSpec, repositoryIdentity, scrubServiceConfig } from './secrets.js'
import { validateSpec } from './validate.js'

/** A stored spec with a secret in every place one can live. Quantities are already in rendered form. */
function storedSpec (): DatabaseSpec {
  return {
    database_name: 'storefront',
    postgres_version: '17.6',
    spock_version: '5',
    cpus: '500m',
    memory: '17GB',
    nodes: [
      {
        name: 'n1',
        host_ids: ['host-1'],
        backup_config: { repositories: [{ type: 'gcs', gcs_bucket: 'node-backups', gcs_key: 'node-gcs-key' }] },
        restore_config: {
          source_database_id: 'old', source_node_name: 'n1', source_database_name: 'old',
          repository: { type: 'azure', azure_account: 'acct', azure_container: 'cont', azure_key: 'node-azure-key' }
        }
      },
      { name: 'n2', host_ids: ['host-2'] }
    ],
    database_users: [
      { username: 'admin', password: 'admin-pw', db_owner: true, attributes: ['LOGIN'] },
      { username: 'app', password: 'app-pw', db_owner: false }
    ],
    backup_config: {
      repositories: [
        { type: 's3', id: 'main', s3_bucket: 'backups', s3_region: 'us-east-1', s3_key: 'AKIA', s3_key_secret: 'SECRET' },
        { type: 'posix', base_path: '/backups' }
      ]
    },
    restore_config: {
      source_database_id: 'old', source_node_name: 'n1', source_database_name: 'old',
      repository: { type: 's3', s3_bucket: 'old-backups', s3_key: 'OLD-AKIA', s3_key_secret: 'OLD-SECRET' }
    },
    services: [{
      service_id: 'mcp', service_type: 'mcp', version: '1.0.0', host_ids: ['host-1'], connect_as: 'app',
      config: { llm_provider: 'anthropic', anthropic_api_key: 'sk-ant', token_budget: 1000, init_token: 't', allow_writes: false }
    }]
  }
}

const SECRET_VALUES = ['admin-pw', 'app-pw', 'AKIA', 'SECRET', 'OLD-AKIA', 'OLD-SECRET', 'node-gcs-key', 'node-azure-key', 'sk-ant']

describe('redactSpec', () => {
  it('removes every password, repository key and secret-looking service setting', () => {
    const redacted = JSON.stringify(redactSpec(storedSpec()))
    for (const secret of SECRET_VALUES) expect(redacted).not.toContain(secret)
    for (const field of ['password', 's3_key', 's3_key_secret', 'gcs_key', 'azure_key', 'anthropic_api_key', 'init_token']) {
      expect(redacted).not.toContain(`"${field}"`)
    }
  })

  it('keeps everything else, with db_owner always present', () => {
    const redacted = redactSpec(storedSpec())
    expect(redacted.database_users).toEqual([
      { username: 'admin', db_owner: true, attributes: ['LOGIN'] },
      { username: 'app', db_owner: false }
    ])
    expect(redactSpec({ ...storedSpec(), database_users: [{ username: 'x' }] }).database_users).toEqual([{ username: 'x', db_owner: false }])
    expect(redacted.backup_config?.repositories[0]).toEqual({ type: 's3', id: 'main', s3_bucket: 'backups', s3_region: 'us-east-1' })
    expect(redacted.services?.[0]?.config).toEqual({ llm_provider: 'anthropic', token_budget: 1000, allow_writes: false })
  })

  it('renders cpus and memory as the anchor does, at every level', () => {
    const spec: DatabaseSpec = {
      ...storedSpec(),
      cpus: '0.5',
      memory: '16GiB',
      nodes: [{ name: 'n1', host_ids: ['host-1'], cpus: '1500m', memory: '500M' }, { name: 'n2', host_ids: ['host-2'], cpus: '0', memory: '0' }]
    }
    const redacted = redactSpec(spec)
    expect([redacted.cpus, redacted.memory]).toEqual(['500m', '17GB'])
    expect(redacted.nodes[0]).toEqual({ name: 'n1', host_ids: ['host-1'], cpus: '1.5', memory: '500MB' })
    expect(redacted.nodes[1]).toEqual({ name: 'n2', host_ids: ['host-2'] })
  })

  it('does not touch its input', () => {
    const spec = storedSpec()
    const before = structuredClone(spec)
    redactSpec(spec)
    expect(spec).toEqual(before)
  })

  it('produces a spec that validates again (GET then POST works)', () => {
    const redacted = redactSpec({ ...storedSpec(), cpus: '0.5', memory: '16GiB' })
    // The azure restore repository is the one place where a missing key is an error unless the update keeps it.
    expect(validateSpec(redacted, { previous: storedSpec() })).toEqual({ ok: true, spec: redacted })
  })
})

describe('scrubServiceConfig', () => {
  it('strips secret-looking keys recursively, through arrays', () => {
    const config = {
      pipelines: [{ name: 'docs', embedding_llm: { provider: 'openai', api_key: 'sk' }, search: { private_key: 'pk', limit: 5 } }],
      db_pool: 10,
      jwt_secret: 'x'.repeat(32),
      init_users: [{ username: 'a', password: 'b' }]
    }
    expect(scrubServiceConfig(config)).toEqual({
      pipelines: [{ name: 'docs', embedding_llm: { provider: 'openai' }, search: { limit: 5 } }],
      db_pool: 10
    })
  })

  it('matches the anchor list', () => {
    for (const key of ['password', 'DB_PASSWORD', 'jwt_secret', 'api_key', 'OpenAIApiKey', 'x-api-key', 'credentials', 'private_key', 'private-key', 'access_key', 'aws-access-key', 'token', 'auth_token', 'init_users']) {
      expect(isSensitiveConfigKey(key), key).toBe(true)
    }
    for (const key of ['token_budget', 'tokenizer', 'llm_model', 'db_pool', 'max_rows']) expect(isSensitiveConfigKey(key), key).toBe(false)
  })
})

describe('mergeSecrets', () => {
  it('restores every secret of a redacted spec sent back unchanged', () => {
    const stored = storedSpec()
    const resent = redactSpec(stored)
    const merged = mergeSecrets(resent, stored)
    // Service config secrets are not merged (the anchor keeps none either), so compare without services.
    expect({ ...merged, services: undefined }).toEqual({ ...stored, services: undefined })
  })

  it('keeps a password the update omits and takes one it sends', () => {
    const update: DatabaseSpec = { ...storedSpec(), database_users: [{ username: 'admin', db_owner: true }, { username: 'app', password: 'new-pw' }, { username: 'new' }] }
    expect(mergeSecrets(update, storedSpec()).database_users).toEqual([
      { username: 'admin', password: 'admin-pw', db_owner: true },
      { username: 'app', password: 'new-pw' },
      { username: 'new' }
    ])
  })

  it('keeps repository keys only for the same repository', () => {
    const stored = storedSpec()
    const sameRepo = { type: 's3' as const, id: 'main', s3_bucket: 'backups', s3_region: 'us-east-1' }
    const otherBucket = { ...sameRepo, s3_bucket: 'elsewhere' }
    const otherId = { ...sameRepo, id: 'second' }
    const update: DatabaseSpec = { ...stored, backup_config: { repositories: [otherBucket, sameRepo, otherId] } }
    expect(mergeSecrets(update, stored).backup_config?.repositories).toEqual([
      otherBucket,
      { ...sameRepo, s3_key: 'AKIA', s3_key_secret: 'SECRET' },
      otherId
    ])
  })

  it('treats an empty key as omitted, and a new key as a replacement', () => {
    const stored = storedSpec()
    const repo = { type: 's3' as const, id: 'main', s3_bucket: 'backups', s3_region: 'us-east-1', s3_key: '', s3_key_secret: 'ROTATED' }
    expect(mergeSecrets({ ...stored, backup_config: { repositories: [repo] } }, stored).backup_config?.repositories[0])
      .toEqual({ ...repo, s3_key: 'AKIA', s3_key_secret: 'ROTATED' })
  })

  it('matches node-level repositories within the same node only', () => {
    const stored = storedSpec()
    const nodeRepo = { type: 'gcs' as const, gcs_bucket: 'node-backups' }
    const update: DatabaseSpec = {
      ...stored,
      nodes: [
        { name: 'n2', host_ids: ['host-2'], backup_config: { repositories: [nodeRepo] } },
        { name: 'n1', host_ids: ['host-1'], backup_config: { repositories: [nodeRepo] } }
      ]
    }
    const merged = mergeSecrets(update, stored)
    expect(merged.nodes[0]?.backup_config?.repositories[0]).toEqual(nodeRepo)
    expect(merged.nodes[1]?.backup_config?.repositories[0]).toEqual({ ...nodeRepo, gcs_key: 'node-gcs-key' })
  })

  it('keeps restore keys only when the restore repository is the same', () => {
    const stored = storedSpec()
    const sameRestore = { ...stored.restore_config!, repository: { type: 's3' as const, s3_bucket: 'old-backups' } }
    expect(mergeSecrets({ ...stored, restore_config: sameRestore }, stored).restore_config?.repository)
      .toEqual({ type: 's3', s3_bucket: 'old-backups', s3_key: 'OLD-AKIA', s3_key_secret: 'OLD-SECRET' })
    const otherRestore = { ...stored.restore_config!, repository: { type: 's3' as const, s3_bucket: 'another' } }
    expect(mergeSecrets({ ...stored, restore_config: otherRestore }, stored).restore_config?.repository)
      .toEqual({ type: 's3', s3_bucket: 'another' })
  })

  it('does not touch its inputs', () => {
    const stored = storedSpec()
    const update = redactSpec(stored)
    const before = structuredClone(update)
    mergeSecrets(update, stored)
    expect(update).toEqual(before)
    expect(stored).toEqual(storedSpec())
  })
})

describe('repositoryIdentity', () => {
  it('distinguishes repositories by type, id and location fields', () => {
    expect(repositoryIdentity({ type: 's3', id: 'a', s3_bucket: 'b', s3_endpoint: 'e', s3_region: 'r', base_path: '/p', s3_key: 'k' })).toBe('s3:a:b:e:r:/p')
    expect(repositoryIdentity({ type: 'gcs', gcs_bucket: 'b' })).toBe('gcs::b::')
    expect(repositoryIdentity({ type: 'azure', azure_account: 'a', azure_container: 'c' })).toBe('azure::a:c::')
    expect(repositoryIdentity({ type: 'posix', base_path: '/b' })).toBe('posix::/b')
  })
})
