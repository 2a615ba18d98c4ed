import { describe, expect, it } from 'vitest'
import { applyDefaults, effectiveNode, repositoryWithDefaults } from './defaults.js'
import type { DatabaseSpec } from './schemas.js'

const minimal: DatabaseSpec = { database_name: 'storefront', nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }] }

describe('applyDefaults', () => {
  it('fills versions from the host default and Spock 5', () => {
    const out = applyDefaults(minimal, { defaultPostgresVersion: '15.8' })
    expect(out).toEqual({ ...minimal, postgres_version: '15.8', spock_version: '5' })
    expect(minimal.postgres_version).toBeUndefined()
    expect(applyDefaults(minimal, { defaultPostgresVersion: '15.8', defaultSpockVersion: '4' }).spock_version).toBe('4')
  })

  it('keeps versions the spec names', () => {
    const out = applyDefaults({ ...minimal, postgres_version: '17.6', spock_version: '4' }, { defaultPostgresVersion: '15.8' })
    expect([out.postgres_version, out.spock_version]).toEqual(['17.6', '4'])
  })

  it('on update keeps the stored versions an update omits, also per node', () => {
    const previous: DatabaseSpec = {
      ...minimal,
      postgres_version: '17.6',
      spock_version: '5',
      nodes: [{ name: 'n1', host_ids: ['host-1'], postgres_version: '17.5' }, { name: 'n2', host_ids: ['host-2'] }]
    }
    const update: DatabaseSpec = { ...minimal, nodes: [...minimal.nodes, { name: 'n3', host_ids: ['host-3'] }] }
    const out = applyDefaults(update, { defaultPostgresVersion: '18.1', previous })
    expect(out.postgres_version).toBe('17.6')
    expect(out.spock_version).toBe('5')
    expect(out.nodes.map(node => node.postgres_version)).toEqual(['17.5', undefined, undefined])
  })
})

describe('effectiveNode', () => {
  const spec: DatabaseSpec = {
    database_name: 'storefront',
    postgres_version: '17.6',
    spock_version: '5',
    port: 5432,
    patroni_port: 8888,
    cpus: '4',
    memory: '16GiB',
    postgresql_conf: { max_connections: 100, work_mem: '4MB' },
    pg_hba_conf: ['host all all 10.0.0.0/8 scram-sha-256'],
    pg_ident_conf: ['db-map a b'],
    backup_config: { repositories: [{ type: 'posix', base_path: '/db' }] },
    restore_config: { source_database_id: 'old', source_node_name: 'n1', source_database_name: 'old', repository: { type: 'posix', base_path: '/old' } },
    orchestrator_opts: { swarm: { extra_labels: { a: 'b' } } },
    nodes: [
      { name: 'n1', host_ids: ['host-1'] },
      {
        name: 'n12', host_ids: ['host-2', 'host-3'], postgres_version: '17.7', port: 0, cpus: '0', memory: '2GiB',
        postgresql_conf: { work_mem: '64MB' }, pg_hba_conf: ['host all app 1.2.3.4/32 md5'], pg_ident_conf: ['node-map c d'],
        backup_config: { repositories: [{ type: 'posix', base_path: '/node' }] }, orchestrator_opts: { swarm: { image: 'x' } }
      },
      { name: 'n3', host_ids: ['host-4'], source_node: 'n1' }
    ]
  }

  it('inherits database-level values for a node without overrides', () => {
    expect(effectiveNode(spec, 'n1')).toEqual({
      name: 'n1', ordinal: 1, host_ids: ['host-1'], postgres_version: '17.6', spock_version: '5', port: 5432, patroni_port: 8888,
      cpus: '4', memory: '16GiB', postgresql_conf: { max_connections: 100, work_mem: '4MB' },
      pg_hba_conf: ['host all all 10.0.0.0/8 scram-sha-256'], pg_ident_conf: ['db-map a b'],
      backup_config: spec.backup_config, restore_config: spec.restore_config, orchestrator_opts: spec.orchestrator_opts, source_node: undefined
    })
  })

  it('applies node overrides: set values win, zero cpus inherit, a 0 port means random, conf merges, hba prepends', () => {
    expect(effectiveNode(spec, 'n12')).toEqual({
      name: 'n12', ordinal: 12, host_ids: ['host-2', 'host-3'], postgres_version: '17.7', spock_version: '5', port: 0, patroni_port: 8888,
      cpus: '4', memory: '2GiB', postgresql_conf: { max_connections: 100, work_mem: '64MB' },
      pg_hba_conf: ['host all app 1.2.3.4/32 md5', 'host all all 10.0.0.0/8 scram-sha-256'], pg_ident_conf: ['node-map c d', 'db-map a b'],
      backup_config: { repositories: [{ type: 'posix', base_path: '/node' }] }, restore_config: spec.restore_config,
      orchestrator_opts: { swarm: { image: 'x' } }, source_node: undefined
    })
  })

  it('does not restore a node that syncs from a source node', () => {
    const node = effectiveNode(spec, 'n3')
    expect(node?.restore_config).toBeUndefined()
    expect(node?.source_node).toBe('n1')
  })

  it('returns copies, and undefined for an unknown node', () => {
    const node = effectiveNode(spec, 'n1')
    node?.pg_hba_conf.push('local all all trust')
    node?.backup_config?.repositories.pop()
    expect(spec.pg_hba_conf).toHaveLength(1)
    expect(spec.backup_config?.repositories).toHaveLength(1)
    expect(effectiveNode(spec, 'n9')).toBeUndefined()
  })
})

describe('repositoryWithDefaults', () => {
  it('fills endpoints per provider and retention of 7 by time, without overriding', () => {
    expect(repositoryWithDefaults({ type: 's3', s3_bucket: 'b', s3_region: 'eu-west-1' }))
      .toEqual({ type: 's3', s3_bucket: 'b', s3_region: 'eu-west-1', s3_endpoint: 's3.eu-west-1.amazonaws.com', retention_full: 7, retention_full_type: 'time' })
    expect(repositoryWithDefaults({ type: 's3', s3_bucket: 'b' }).s3_endpoint).toBe('s3.amazonaws.com')
    expect(repositoryWithDefaults({ type: 'gcs', gcs_bucket: 'b' }).gcs_endpoint).toBe('storage.googleapis.com')
    expect(repositoryWithDefaults({ type: 'azure', azure_endpoint: 'blob.core.usgovcloudapi.net', retention_full: 2, retention_full_type: 'count' }))
      .toEqual({ type: 'azure', azure_endpoint: 'blob.core.usgovcloudapi.net', retention_full: 2, retention_full_type: 'count' })
  })
})
