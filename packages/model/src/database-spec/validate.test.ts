import { describe, expect, it } from 'vitest'
import { formatIssues } from '../errors.js'
import { IDENTIFIER_MESSAGE } from '../ids.js'
import type { DatabaseSpec } from './schemas.js'
import { validateCreateRequest, validateSpec, validateUpdateRequest, type ValidationContext } from './validate.js'

function spec (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    database_name: 'storefront',
    nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }],
    ...overrides
  }
}

/** The newline-joined message an API client would see, or '' when the spec is valid. */
function errorsOf (input: unknown, ctx: ValidationContext = {}): string {
  const result = validateSpec(input, ctx)
  return result.ok ? '' : formatIssues(result.issues)
}

const stored: DatabaseSpec = {
  database_name: 'storefront',
  postgres_version: '17.6',
  spock_version: '5',
  nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }]
}

describe('validateSpec: schema', () => {
  it('accepts a minimal spec and returns it', () => {
    const result = validateSpec(spec())
    expect(result).toEqual({ ok: true, spec: spec() })
  })

  it('accepts a spec using every field', () => {
    const repo = { type: 's3', id: 'main', s3_bucket: 'backups', s3_region: 'us-east-1', s3_key: 'AK', s3_key_secret: 'SK', retention_full: 3, retention_full_type: 'count', custom_options: { 'storage-upload-chunk-size': '5MiB' } }
    const full = {
      database_name: 'storefront',
      postgres_version: '17.6',
      spock_version: '5',
      port: 5432,
      patroni_port: 8888,
      cpus: '500m',
      memory: '16GiB',
      nodes: [
        {
          name: 'n1', host_ids: ['host-1', 'host-2'], postgres_version: '17.5', port: 6432, patroni_port: 8889, cpus: '2', memory: '4G',
          postgresql_conf: { work_mem: '64MB' }, pg_hba_conf: ['host all app 10.0.0.0/8 scram-sha-256'], pg_ident_conf: ['certs CN=alice alice'],
          backup_config: { repositories: [{ type: 'posix', base_path: '/backups' }] },
          orchestrator_opts: { swarm: { image: 'custom:1' } }
        },
        { name: 'n2', host_ids: ['host-3'], source_node: 'n1' }
      ],
      database_users: [{ username: 'admin', password: 'secret', db_owner: true, attributes: ['LOGIN', 'superuser'], roles: ['pg_read_all_data'] }],
      services: [{
        service_id: 'mcp', service_type: 'mcp', version: '1.0.0', host_ids: ['host-1'], port: 8080, config: { llm_provider: 'anthropic' },
        cpus: '1', memory: '1GiB', database_connection: { target_nodes: ['n1'], target_session_attrs: 'primary' }, connect_as: 'admin'
      }],
      backup_config: { repositories: [repo], schedules: [{ id: 'daily', type: 'full', cron_expression: '0 3 * * *' }] },
      restore_config: { source_database_id: 'old-db', source_node_name: 'n1', source_database_name: 'old', repository: { type: 'gcs', gcs_bucket: 'old-backups' }, restore_options: { type: 'time', target: '2025-01-01T00:00:00Z' } },
      postgresql_conf: { max_connections: 500, shared_preload_libraries: 'pg_stat_statements, spock' },
      pg_hba_conf: ['# comment', 'hostssl all all 0.0.0.0/0 scram-sha-256'],
      pg_ident_conf: ['certs "CN=alice" alice'],
      orchestrator_opts: { swarm: { extra_volumes: [{ host_path: '/data', destination_path: '/mnt' }], extra_networks: [{ id: 'traefik', aliases: ['db'], driver_opts: { a: 'b' } }], extra_labels: { 'traefik.enable': 'true' } } },
      scripts: { post_init: ['CREATE ROLE app NOLOGIN'], post_database_create: ['CREATE EXTENSION vector'] }
    }
    expect(errorsOf(full)).toBe('')
  })

  it('rejects input that is not an object', () => {
    expect(errorsOf('nope')).toBe('spec must be a JSON object')
    expect(errorsOf([spec()])).toBe('spec must be a JSON object')
  })

  it('reports missing required fields', () => {
    expect(errorsOf({})).toBe('database_name: missing required field\nnodes: missing required field')
    expect(errorsOf(spec({ nodes: [{ name: 'n1' }] }))).toBe('nodes[0].host_ids: missing required field')
  })

  it('rejects unknown fields at any depth, one issue per field', () => {
    expect(errorsOf(spec({ databse_name: 'x', nodes: [{ name: 'n1', host_ids: ['host-1'], host_id: 'host-1' }] })))
      .toBe('nodes[0].host_id: unknown field\ndatabse_name: unknown field')
  })

  it('enforces the anchor limits', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => ({ name: `n${i + 1}`, host_ids: [`host-${i + 1}`] }))
    expect(errorsOf(spec({ nodes }))).toBe('nodes: must have at most 9 items')
    expect(errorsOf(spec({ nodes: [] }))).toBe('nodes: must have at least 1 item')
    const users = Array.from({ length: 17 }, (_, i) => ({ username: `u${i}` }))
    expect(errorsOf(spec({ database_users: users }))).toBe('database_users: must have at most 16 items')
    const conf = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`setting_${i}`, i]))
    expect(errorsOf(spec({ postgresql_conf: conf }))).toBe('postgresql_conf: must have at most 64 entries')
    expect(errorsOf(spec({ database_name: 'x'.repeat(32) }))).toBe('database_name: must be at most 31 characters long')
    expect(errorsOf(spec({ port: 65536, patroni_port: -1 }))).toBe('port: must be at most 65535\npatroni_port: must be at least 0')
    expect(errorsOf(spec({ port: 5432.5 }))).toBe('port: must be an integer')
    expect(errorsOf(spec({ nodes: [{ name: 'n1', host_ids: [] }] }))).toBe('nodes[0].host_ids: must have at least 1 item')
    const restore = { source_database_id: 'a', source_node_name: 'n1', source_database_name: 'a', repository: { type: 'posix', base_path: '/b' }, restore_options: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`o${i}`, 'x'])) }
    expect(errorsOf(spec({ restore_config: restore }))).toBe('restore_config.restore_options: must have at most 32 entries')
  })

  it('checks version and cpus patterns', () => {
    expect(errorsOf(spec({ postgres_version: '17', spock_version: '50', cpus: '0.0001' }))).toBe([
      'postgres_version: must match the pattern ^\\d{2}\\.\\d{1,2}$',
      'spock_version: must match the pattern ^\\d{1}$',
      'cpus: must match the pattern ^[0-9]+(\\.[0-9]{1,3}|m)?$'
    ].join('\n'))
    expect(errorsOf(spec({ cpus: '14' }))).toBe('')
    expect(errorsOf(spec({ cpus: '0.5' }))).toBe('')
    expect(errorsOf(spec({ cpus: '500m' }))).toBe('')
  })

  it('anchors the node name pattern', () => {
    expect(errorsOf(spec({ nodes: [{ name: 'node-n1', host_ids: ['host-1'] }] }))).toBe('nodes[0].name: must match the pattern ^n[0-9]+$')
    expect(errorsOf(spec({ nodes: [{ name: 'n1x', host_ids: ['host-1'] }] }))).toBe('nodes[0].name: must match the pattern ^n[0-9]+$')
  })

  it('applies the identifier rule to host ids, repository ids, restore sources and service ids', () => {
    const result = errorsOf(spec({
      nodes: [{ name: 'n1', host_ids: ['Host_1', 'a--b'] }],
      backup_config: { repositories: [{ type: 'posix', base_path: '/b', id: '-repo' }] },
      restore_config: { source_database_id: 'x'.repeat(37), source_node_name: 'n1', source_database_name: 'a', repository: { type: 'posix', base_path: '/b' } },
      database_users: [{ username: 'app' }],
      services: [{ service_id: 'MCP', service_type: 'mcp', version: 'latest', host_ids: ['host-1'], connect_as: 'app' }]
    }))
    expect(result).toBe([
      `nodes[0].host_ids[0]: ${IDENTIFIER_MESSAGE}`,
      `nodes[0].host_ids[1]: ${IDENTIFIER_MESSAGE}`,
      `services[0].service_id: ${IDENTIFIER_MESSAGE}`,
      `backup_config.repositories[0].id: ${IDENTIFIER_MESSAGE}`,
      `restore_config.source_database_id: ${IDENTIFIER_MESSAGE}`
    ].join('\n'))
  })

  it('names map keys in brackets', () => {
    expect(errorsOf(spec({ backup_config: { repositories: [{ type: 'posix', base_path: '/b', custom_options: { 'repo-path': 7 } }] } })))
      .toBe('backup_config.repositories[0].custom_options[repo-path]: must be a string')
  })

  it('uses the anchor wording for closed sets', () => {
    expect(errorsOf(spec({ backup_config: { repositories: [{ type: 'ftp' }] } })))
      .toBe("backup_config.repositories[0].type: unsupported repo type 'ftp'")
    expect(errorsOf(spec({ database_users: [{ username: 'app' }], services: [{ service_id: 'x', service_type: 'grafana', version: 'v1', host_ids: ['host-1'], connect_as: 'app', database_connection: { target_session_attrs: 'nearest' } }] })))
      .toBe([
        'services[0].service_type: unsupported service type "grafana" (supported: mcp, postgrest, rag)',
        "services[0].version: version must be in semver format (e.g., '1.0.0') or 'latest'",
        'services[0].database_connection.target_session_attrs: invalid target_session_attrs "nearest" (must be primary, prefer-standby, standby, read-write, or any)'
      ].join('\n'))
  })
})

describe('validateSpec: cross-field rules', () => {
  it('reports the anchor example exactly: duplicate host in a node and a duplicate node name', () => {
    const input = spec({
      nodes: [
        { name: 'n1', host_ids: ['host-1', 'host-1'] },
        { name: 'n2', host_ids: ['host-2'] },
        { name: 'n2', host_ids: ['host-3'] }
      ]
    })
    expect(errorsOf(input)).toBe('nodes[0].host_ids[1]: host IDs must be unique within a node\nnodes[2]: node names must be unique within a database')
  })

  it('reports schema and cross-field problems together when the shape is sound', () => {
    const input = spec({ nodes: [{ name: 'n1', host_ids: ['host_1'] }, { name: 'n1', host_ids: ['host-2'] }] })
    expect(errorsOf(input)).toBe(`nodes[0].host_ids[0]: ${IDENTIFIER_MESSAGE}\nnodes[1]: node names must be unique within a database`)
  })

  it('skips cross-field rules when the shape is wrong, since their inputs cannot be trusted', () => {
    const input = spec({ port: 'x', nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n1', host_ids: ['host-2'] }] })
    expect(errorsOf(input)).toBe('port: must be a number')
  })

  describe('users', () => {
    it('requires unique usernames and at most one owner', () => {
      const users = [{ username: 'a', db_owner: true }, { username: 'a' }, { username: 'b', db_owner: true }, { username: 'c', db_owner: false }]
      expect(errorsOf(spec({ database_users: users }))).toBe([
        'database_users[1]: usernames must be unique within a database',
        'database_users[2]: cannot have multiple users with db_owner = true'
      ].join('\n'))
    })

    it('reserves pgedge_superuser', () => {
      expect(errorsOf(spec({ database_users: [{ username: 'pgedge_superuser' }] })))
        .toBe("database_users[0].username: role name 'pgedge_superuser' conflicts with a builtin role")
    })

    it('allows only the boolean role attributes, in any case', () => {
      const attributes = ['LOGIN', 'nosuperuser', 'CreateDB', 'NOBYPASSRLS', 'PASSWORD', 'CONNECTION LIMIT 5']
      expect(errorsOf(spec({ database_users: [{ username: 'app', attributes }] }))).toBe([
        'database_users[0].attributes[4]: unsupported role attribute "PASSWORD"',
        'database_users[0].attributes[5]: unsupported role attribute "CONNECTION LIMIT 5"'
      ].join('\n'))
    })
  })

  describe('source_node', () => {
    const restore = { source_database_id: 'old', source_node_name: 'n1', source_database_name: 'old', repository: { type: 'posix', base_path: '/b' } }

    it('takes either source_node or restore_config', () => {
      const nodes = [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'], source_node: 'n1', restore_config: restore }]
      expect(errorsOf(spec({ nodes }))).toBe('nodes[1].source_node: specify either source_node or restore_config')
    })

    it('may not be the node itself', () => {
      const nodes = [{ name: 'n1', host_ids: ['host-1'], source_node: 'n1' }]
      expect(errorsOf(spec({ nodes }))).toBe('nodes[0].source_node: a node cannot use itself as a source node\nnodes[0].source_node: source node must refer to an existing node')
    })

    it('must exist', () => {
      const nodes = [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'], source_node: 'n7' }]
      expect(errorsOf(spec({ nodes }))).toBe('nodes[1].source_node: source node does not exist')
    })

    it('must not be a node that is itself being populated from a source', () => {
      const nodes = [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'], source_node: 'n1' }, { name: 'n3', host_ids: ['host-3'], source_node: 'n2' }]
      expect(errorsOf(spec({ nodes }))).toBe('nodes[2].source_node: source node must refer to an existing node')
    })

    it('on update must be a node of the stored spec', () => {
      const nodes = [...stored.nodes, { name: 'n3', host_ids: ['host-3'] }, { name: 'n4', host_ids: ['host-4'], source_node: 'n3' }, { name: 'n5', host_ids: ['host-5'], source_node: 'n1' }]
      expect(errorsOf(spec({ nodes }), { previous: stored })).toBe('nodes[3].source_node: source node must refer to an existing node')
    })

    it('reports a rule reached twice only once', () => {
      const nodes = [...stored.nodes, { name: 'n3', host_ids: ['host-3'], source_node: 'n1' }, { name: 'n4', host_ids: ['host-4'], source_node: 'n3' }]
      expect(errorsOf(spec({ nodes }), { previous: stored })).toBe('nodes[3].source_node: source node must refer to an existing node')
    })
  })

  describe('ports', () => {
    it('rejects Postgres and Patroni sharing a port', () => {
      expect(errorsOf(spec({ port: 5432, patroni_port: 5432, nodes: [{ name: 'n1', host_ids: ['host-1'] }] })))
        .toBe("duplicate ports allocated on host 'host-1': '5432' duplicated in: nodes[0].patroni_port, nodes[0].port")
    })

    it('uses node overrides over database ports', () => {
      expect(errorsOf(spec({ port: 8888, patroni_port: 8888, nodes: [{ name: 'n1', host_ids: ['host-1'], port: 5432, patroni_port: 5432 }] })))
        .toBe("duplicate ports allocated on host 'host-1': '5432' duplicated in: nodes[0].patroni_port, nodes[0].port")
    })

    it('includes service ports', () => {
      const input = spec({
        port: 5432,
        nodes: [{ name: 'n1', host_ids: ['host-1'] }],
        database_users: [{ username: 'app' }],
        services: [{ service_id: 'mcp', service_type: 'mcp', version: '1.0', port: 5432, host_ids: ['host-1'], connect_as: 'app' }]
      })
      expect(errorsOf(input)).toBe("duplicate ports allocated on host 'host-1': '5432' duplicated in: nodes[0].port, services[0].port")
    })

    it('reports two nodes on one host per port, hosts and ports in order', () => {
      const input = spec({
        port: 5432,
        patroni_port: 8888,
        nodes: [{ name: 'n1', host_ids: ['host-b', 'host-a'] }, { name: 'n2', host_ids: ['host-a', 'host-b'] }]
      })
      expect(errorsOf(input)).toBe([
        "duplicate ports allocated on host 'host-a': '5432' duplicated in: nodes[0].port, nodes[1].port",
        "duplicate ports allocated on host 'host-a': '8888' duplicated in: nodes[0].patroni_port, nodes[1].patroni_port",
        "duplicate ports allocated on host 'host-b': '5432' duplicated in: nodes[0].port, nodes[1].port",
        "duplicate ports allocated on host 'host-b': '8888' duplicated in: nodes[0].patroni_port, nodes[1].patroni_port"
      ].join('\n'))
    })

    it('lets random (0) ports and different hosts coexist', () => {
      expect(errorsOf(spec({ port: 0, patroni_port: 0, nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-1'] }] }))).toBe('')
      expect(errorsOf(spec({ port: 5432 }))).toBe('')
    })

    it('can require ports for orchestrators that run Postgres on the host', () => {
      const input = spec({ nodes: [{ name: 'n1', host_ids: ['host-1'], port: 5432 }] })
      expect(errorsOf(input, { requirePorts: true })).toBe('nodes[0].patroni_port: patroni_port must be defined')
      expect(errorsOf(spec({ port: 5432, patroni_port: 8888 }), { requirePorts: true })).toBe('')
    })
  })

  describe('postgresql_conf', () => {
    it('rejects hba_file and ident_file at database and node level, case-insensitively', () => {
      const input = spec({
        postgresql_conf: { hba_file: '/etc/hba' },
        nodes: [{ name: 'n1', host_ids: ['host-1'], postgresql_conf: { IDENT_FILE: '/x' } }]
      })
      expect(errorsOf(input)).toBe([
        'nodes[0].postgresql_conf[IDENT_FILE]: "IDENT_FILE" is not allowed: it overrides the control-plane-managed pg_hba.conf/pg_ident.conf and would make pg_hba_conf/pg_ident_conf entries ineffective',
        'postgresql_conf[hba_file]: "hba_file" is not allowed: it overrides the control-plane-managed pg_hba.conf/pg_ident.conf and would make pg_hba_conf/pg_ident_conf entries ineffective'
      ].join('\n'))
    })

    it('keeps the replication extension in shared_preload_libraries: spock or pglogical', () => {
      expect(errorsOf(spec({ postgresql_conf: { shared_preload_libraries: 'pg_stat_statements, spock' } }))).toBe('')
      expect(errorsOf(spec({ postgresql_conf: { SHARED_PRELOAD_LIBRARIES: 'pglogical,pg_stat_statements' } }))).toBe('')
      expect(errorsOf(spec({ postgresql_conf: { shared_preload_libraries: 'pg_stat_statements,auto_explain' } })))
        .toBe('postgresql_conf[shared_preload_libraries]: "spock" must be included in shared_preload_libraries (or "pglogical" where Spock is not available)')
      expect(errorsOf(spec({ nodes: [{ name: 'n1', host_ids: ['host-1'], postgresql_conf: { shared_preload_libraries: ['spock'] } }] })))
        .toBe('nodes[0].postgresql_conf[shared_preload_libraries]: must be a string, number or boolean')
    })
  })

  it('parses memory the anchor way', () => {
    expect(errorsOf(spec({ memory: '16GiB' }))).toBe('')
    expect(errorsOf(spec({ memory: '500M' }))).toBe('')
    expect(errorsOf(spec({ memory: '%^&*' }))).toBe('memory: failed to parse bytes: strconv.ParseFloat: parsing "": invalid syntax')
    expect(errorsOf(spec({ nodes: [{ name: 'n1', host_ids: ['host-1'], memory: '16 XB' }] })))
      .toBe('nodes[0].memory: failed to parse bytes: unhandled size name: xb')
    expect(errorsOf(spec({ memory: '12345678901234567' }))).toBe('memory: must be at most 16 characters long')
  })

  it('checks pg_hba and pg_ident lines, skipping comments', () => {
    const input = spec({
      pg_hba_conf: ['# allow app', 'hots all all 0.0.0.0/0 trust', 'host all all scram-sha-256'],
      nodes: [{ name: 'n1', host_ids: ['host-1'], pg_ident_conf: ['map "CN=unterminated alice'] }]
    })
    expect(errorsOf(input)).toBe([
      'nodes[0].pg_ident_conf[0]: invalid pg_ident entry "map \\"CN=unterminated alice": unterminated quoted string',
      'pg_hba_conf[1]: invalid pg_hba entry "hots all all 0.0.0.0/0 trust": unknown connection type "hots"',
      'pg_hba_conf[2]: invalid pg_hba entry "host all all scram-sha-256": host entry requires database, user, address, and an auth method'
    ].join('\n'))
  })

  describe('backup and restore repositories', () => {
    const repoErrors = (repo: Record<string, unknown>): string => errorsOf(spec({ backup_config: { repositories: [repo] } }))

    it('requires the fields of each type', () => {
      expect(repoErrors({ type: 's3' })).toBe('backup_config.repositories[0].s3_bucket: s3_bucket is required for s3 repositories')
      expect(repoErrors({ type: 'gcs' })).toBe('backup_config.repositories[0].gcs_bucket: gcs_bucket is required for gcs repositories')
      expect(repoErrors({ type: 'azure' })).toBe([
        'backup_config.repositories[0].azure_account: azure_account is required for azure repositories',
        'backup_config.repositories[0].azure_container: azure_container is required for azure repositories',
        'backup_config.repositories[0].azure_key: azure_key is required for azure repositories'
      ].join('\n'))
      expect(repoErrors({ type: 'posix' })).toBe('backup_config.repositories[0].base_path: base_path is required for posix repositories')
      expect(repoErrors({ type: 'cifs', base_path: './backups' })).toBe('backup_config.repositories[0].base_path: base_path must be absolute for cifs repositories')
      expect(repoErrors({ type: 'azure', azure_account: 'acct', azure_container: 'cont', azure_key: 'k' })).toBe('')
      expect(repoErrors({ type: 's3', s3_bucket: 'ab' })).toBe('backup_config.repositories[0].s3_bucket: must be at least 3 characters long')
    })

    it('checks pgBackRest option names', () => {
      expect(repoErrors({ type: 'posix', base_path: '/b', custom_options: { '/bad': 'yes', 'good-one': 'yes' } }))
        .toBe('backup_config.repositories[0].custom_options[/bad]: invalid option name')
    })

    it('validates node-level and restore repositories with their paths', () => {
      const input = spec({
        nodes: [{
          name: 'n1',
          host_ids: ['host-1'],
          backup_config: { repositories: [{ type: 'posix', base_path: 'rel' }] },
          restore_config: { source_database_id: 'old', source_node_name: 'node1', source_database_name: 'old', repository: { type: 'gcs' }, restore_options: { Type: 'time' } }
        }]
      })
      expect(errorsOf(input)).toBe([
        'nodes[0].restore_config.source_node_name: must match the pattern ^n[0-9]+$',
        'nodes[0].backup_config.repositories[0].base_path: base_path must be absolute for posix repositories',
        'nodes[0].restore_config.repository.gcs_bucket: gcs_bucket is required for gcs repositories',
        'nodes[0].restore_config.restore_options[Type]: invalid option name'
      ].join('\n'))
    })

    it('accepts an update that omits a stored azure_key, but not a create', () => {
      const azure = { type: 'azure', azure_account: 'acct', azure_container: 'cont' }
      const previous: DatabaseSpec = { ...stored, backup_config: { repositories: [{ ...azure, type: 'azure', azure_key: 'stored-key' }] } }
      const input = spec({ backup_config: { repositories: [azure] } })
      expect(errorsOf(input, { previous })).toBe('')
      expect(errorsOf(input)).toBe('backup_config.repositories[0].azure_key: azure_key is required for azure repositories')
    })
  })

  it('reserves pgedge. labels', () => {
    const input = spec({ orchestrator_opts: { swarm: { extra_labels: { 'pgedge.role': 'x', 'traefik.enable': 'true' } } } })
    expect(errorsOf(input)).toBe('orchestrator_opts.swarm.extra_labels[pgedge.role]: labels starting with "pgedge." are reserved for system use')
  })

  describe('services', () => {
    const service = (overrides: Record<string, unknown> = {}): Record<string, unknown> =>
      ({ service_id: 'mcp', service_type: 'mcp', version: '1.0.0', host_ids: ['host-1'], connect_as: 'app', ...overrides })
    const withServices = (...services: unknown[]): Record<string, unknown> => spec({ database_users: [{ username: 'app' }], services })

    it('requires unique service ids and hosts, and a known connect_as user', () => {
      expect(errorsOf(withServices(service(), service({ host_ids: ['host-1', 'host-1'], connect_as: 'ghost' }))))
        .toBe([
          'services[1]: service IDs must be unique within a database',
          'services[1].host_ids[1]: host IDs must be unique within a service',
          'services[1].connect_as: connect_as "ghost" does not match any database_users entry'
        ].join('\n'))
      expect(errorsOf(withServices(service({ connect_as: '' })))).toBe('services[0].connect_as: connect_as is required')
    })

    it('checks target nodes against the spec', () => {
      expect(errorsOf(withServices(service({ database_connection: { target_nodes: ['n1', '', 'n9', 'n1'] } })))).toBe([
        'services[0].database_connection.target_nodes[1]: node name must not be empty',
        'services[0].database_connection.target_nodes[2]: node "n9" does not exist in the database spec',
        'services[0].database_connection.target_nodes[3]: duplicate node name "n1"'
      ].join('\n'))
    })

    it('keeps writing MCP servers on writable connections', () => {
      expect(errorsOf(withServices(service({ config: { allow_writes: true }, database_connection: { target_session_attrs: 'standby' } }))))
        .toBe("services[0].database_connection.target_session_attrs: allow_writes requires target_session_attrs 'primary' or 'read-write', got 'standby'")
      expect(errorsOf(withServices(service({ config: { allow_writes: true }, database_connection: { target_session_attrs: 'read-write' } })))).toBe('')
    })

    it('limits database id plus service id to 53 characters when the id is known', () => {
      const input = withServices(service({ service_id: 's'.repeat(20) }))
      expect(errorsOf(input, { databaseId: 'd'.repeat(34) })).toBe('services[0].service_id: database ID and service ID combined must not exceed 53 characters (got 54)')
      expect(errorsOf(input, { databaseId: 'd'.repeat(33) })).toBe('')
    })

    it('rejects volumes and network driver options on services', () => {
      const opts = { swarm: { extra_volumes: [{ host_path: '/a', destination_path: '/b' }], extra_networks: [{ id: 'net', driver_opts: { x: 'y' } }] } }
      expect(errorsOf(withServices(service({ orchestrator_opts: opts })))).toBe([
        'services[0].orchestrator_opts.swarm.extra_volumes: extra_volumes is not supported for services',
        'services[0].orchestrator_opts.swarm.extra_networks[0].driver_opts: driver_opts is not supported for services'
      ].join('\n'))
    })
  })

  it('takes extra volumes with absolute paths that leave the container\'s own paths alone', () => {
    const volumes = (extra_volumes: Array<{ host_path: string, destination_path: string }>): string =>
      errorsOf(spec({ orchestrator_opts: { swarm: { extra_volumes } } }))
    expect(volumes([{ host_path: '/srv/backups', destination_path: '/backups' }, { host_path: '/srv/x', destination_path: '/mnt/x/' }])).toBe('')
    expect(volumes([
      { host_path: 'relative', destination_path: '/var/lib/pgmesh/data' },
      { host_path: '/', destination_path: '/var' },
      { host_path: '/srv/../etc', destination_path: '/etc/pgmesh/x' },
      { host_path: '/srv/a', destination_path: '/backups' },
      { host_path: '/srv/b', destination_path: '/backups/' }
    ])).toBe([
      'orchestrator_opts.swarm.extra_volumes[0].host_path: must be an absolute path',
      "orchestrator_opts.swarm.extra_volumes[0].destination_path: must not be or contain one of the container's own paths (/var/lib/pgmesh, /etc/pgmesh, /var/run/postgresql)",
      'orchestrator_opts.swarm.extra_volumes[1].host_path: must not be /',
      "orchestrator_opts.swarm.extra_volumes[1].destination_path: must not be or contain one of the container's own paths (/var/lib/pgmesh, /etc/pgmesh, /var/run/postgresql)",
      'orchestrator_opts.swarm.extra_volumes[2].host_path: must not contain . or .. segments',
      "orchestrator_opts.swarm.extra_volumes[2].destination_path: must not be or contain one of the container's own paths (/var/lib/pgmesh, /etc/pgmesh, /var/run/postgresql)",
      'orchestrator_opts.swarm.extra_volumes[4].destination_path: duplicate destination path'
    ].join('\n'))
  })

  it('rejects host ids the cluster does not know, at each place they appear', () => {
    const input = spec({
      nodes: [{ name: 'n1', host_ids: ['host-1', 'host-9'] }, { name: 'n2', host_ids: ['host-8'] }],
      database_users: [{ username: 'app' }],
      services: [{ service_id: 'mcp', service_type: 'mcp', version: '1.0', host_ids: ['host-7'], connect_as: 'app' }]
    })
    expect(errorsOf(input, { knownHostIds: new Set(['host-1']) })).toBe([
      'nodes[0].host_ids[1]: got invalid host ids: host-9',
      'nodes[1].host_ids[0]: got invalid host ids: host-8',
      'services[0].host_ids[0]: got invalid host ids: host-7'
    ].join('\n'))
    expect(errorsOf(spec(), { knownHostIds: new Set(['host-1', 'host-2']) })).toBe('')
  })
})

describe('validateSpec: update rules', () => {
  it('keeps the database name', () => {
    expect(errorsOf(spec({ database_name: 'shop' }), { previous: stored })).toBe('database_name: database name cannot be changed')
  })

  it('rejects a major version change of existing instances, naming each instance', () => {
    expect(errorsOf(spec({ postgres_version: '18.1' }), { previous: stored, databaseId: 'storefront' })).toBe([
      'postgres_version: invalid change for instance storefront-n1-689qacsi: major version changed from 17 to 18',
      'postgres_version: invalid change for instance storefront-n2-9ptayhma: major version changed from 17 to 18'
    ].join('\n'))
  })

  it('points at the node override that changes the major version', () => {
    const nodes = [{ name: 'n1', host_ids: ['host-1'], postgres_version: '16.4' }, { name: 'n2', host_ids: ['host-2'] }]
    expect(errorsOf(spec({ nodes }), { previous: stored, databaseId: 'storefront' }))
      .toBe('nodes[0].postgres_version: invalid change for instance storefront-n1-689qacsi: major version changed from 17 to 16')
  })

  it('allows minor changes, omitted versions, and new instances on another major', () => {
    expect(errorsOf(spec({ postgres_version: '17.7' }), { previous: stored })).toBe('')
    expect(errorsOf(spec(), { previous: stored })).toBe('')
    const nodes = [...stored.nodes, { name: 'n3', host_ids: ['host-3'], postgres_version: '18.1' }]
    expect(errorsOf(spec({ nodes }), { previous: stored })).toBe('')
    const movedNode = [{ name: 'n1', host_ids: ['host-5'], postgres_version: '18.1' }, { name: 'n2', host_ids: ['host-2'] }]
    expect(errorsOf(spec({ nodes: movedNode }), { previous: stored })).toBe('')
  })

  it('names instances by node and host when the database id is not given', () => {
    expect(errorsOf(spec({ postgres_version: '18.1', nodes: [{ name: 'n1', host_ids: ['host-1'] }] }), { previous: stored }))
      .toBe('postgres_version: invalid change for instance of node n1 on host host-1: major version changed from 17 to 18')
  })
})

describe('request validation', () => {
  it('validates a create request, naming spec fields from the spec down', () => {
    const result = validateCreateRequest({ id: 'Bad_Id', tenant_id: 'acme', spec: spec({ nodes: [{ name: 'n1', host_ids: ['host-1', 'host-1'] }] }) })
    expect(result.ok).toBe(false)
    if (!result.ok) {
      expect(formatIssues(result.issues)).toBe(`id: ${IDENTIFIER_MESSAGE}\nnodes[0].host_ids[1]: host IDs must be unique within a node`)
    }
  })

  it('returns the request and its spec when valid', () => {
    const body = { id: 'storefront', tenant_id: 'acme', spec: spec() }
    expect(validateCreateRequest(body)).toEqual({ ok: true, request: body, spec: body.spec })
  })

  it('reports a missing spec and unknown request fields', () => {
    const result = validateCreateRequest({ tenant: 'acme' })
    expect(result.ok ? '' : formatIssues(result.issues)).toBe('spec: missing required field\ntenant: unknown field')
    const notObject = validateCreateRequest(null)
    expect(notObject.ok ? '' : formatIssues(notObject.issues)).toBe('request body must be a JSON object')
  })

  it('uses the body id, or the id the caller will generate, for the service-name budget', () => {
    const body = (id?: string): Record<string, unknown> => ({
      ...(id === undefined ? {} : { id }),
      spec: spec({ database_users: [{ username: 'app' }], services: [{ service_id: 's'.repeat(20), service_type: 'rag', version: 'latest', host_ids: ['host-1'], connect_as: 'app' }] })
    })
    const fromBody = validateCreateRequest(body('d'.repeat(34)))
    expect(fromBody.ok ? '' : formatIssues(fromBody.issues)).toBe('services[0].service_id: database ID and service ID combined must not exceed 53 characters (got 54)')
    expect(validateCreateRequest(body(), { databaseId: 'd'.repeat(33) }).ok).toBe(true)
  })

  it('keeps the tenant on update', () => {
    const ctx = { previous: stored, databaseId: 'storefront', previousTenantId: 'acme' }
    expect(validateUpdateRequest({ tenant_id: 'acme', spec: spec() }, ctx).ok).toBe(true)
    for (const body of [{ tenant_id: 'other', spec: spec() }, { spec: spec() }]) {
      const result = validateUpdateRequest(body, ctx)
      expect(result.ok ? '' : formatIssues(result.issues)).toBe('tenant_id: tenant ID cannot be changed')
    }
    const untenanted = validateUpdateRequest({ tenant_id: 'acme', spec: spec() }, { previous: stored, databaseId: 'storefront' })
    expect(untenanted.ok ? '' : formatIssues(untenanted.issues)).toBe('tenant_id: tenant ID cannot be changed')
  })

  it('applies the update rules and rejects an id in an update body', () => {
    const result = validateUpdateRequest({ id: 'storefront', spec: spec({ database_name: 'shop', postgres_version: '18.1', nodes: [{ name: 'n1', host_ids: ['host-1'] }] }) }, { previous: stored, databaseId: 'storefront' })
    expect(result.ok ? '' : formatIssues(result.issues)).toBe([
      'id: unknown field',
      'database_name: database name cannot be changed',
      'postgres_version: invalid change for instance storefront-n1-689qacsi: major version changed from 17 to 18'
    ].join('\n'))
  })
})
