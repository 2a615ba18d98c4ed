import { describe, expect, it } from 'vitest'
import { roleAttributes } from './database-setup.js'
import { desiredSettings, formatConninfo, renderHba, renderManagedConf, renderSettingValue } from './postgres-config.js'

const spec = { instanceId: 'db1-n1-abc', listenAddresses: ['127.0.0.1', '10.0.0.5'] }

describe('postgresql.conf rendering', () => {
  it('writes the anchor defaults, the replication settings and the managed connection settings', () => {
    const settings = desiredSettings({ spec, port: 6543, socketDir: '/d/run', logDir: '/d/log', library: 'pglogical' })
    expect(renderManagedConf(settings)).toMatchInlineSnapshot(`
      "# Written by pgmesh; edits are overwritten. Set values through the database spec instead.
      archive_mode = on
      archive_command = '/bin/true'
      checkpoint_completion_target = 0.9
      checkpoint_timeout = '15min'
      dynamic_shared_memory_type = 'posix'
      hot_standby_feedback = on
      logging_collector = on
      log_destination = 'stderr,jsonlog'
      log_filename = 'postgresql-%a.log'
      log_rotation_age = '1d'
      log_truncate_on_rotation = on
      log_line_prefix = '%m [%p] '
      password_encryption = 'scram-sha-256'
      shared_preload_libraries = 'pg_stat_statements,pglogical'
      track_commit_timestamp = on
      track_io_timing = on
      wal_level = 'logical'
      wal_log_hints = on
      wal_sender_timeout = '5s'
      max_worker_processes = 16
      max_replication_slots = 16
      max_wal_senders = 16
      pglogical.conflict_resolution = 'last_update_wins'
      port = 6543
      listen_addresses = '127.0.0.1,10.0.0.5'
      unix_socket_directories = '/d/run'
      unix_socket_permissions = '0700'
      cluster_name = 'db1-n1-abc'
      log_directory = '/d/log'
      "
    `)
  })

  it('uses the Spock GUCs when the host has Spock', () => {
    const settings = desiredSettings({ spec, port: 1, socketDir: '/r', logDir: '/l', library: 'spock' })
    expect(settings.get('shared_preload_libraries')).toBe("'pg_stat_statements,spock'")
    expect(settings.get('spock.conflict_resolution')).toBe("'last_update_wins'")
    expect(settings.has('pglogical.conflict_resolution')).toBe(false)
  })

  it('allows the output plugin where the server has output_plugin_libraries (15.19+), and only there', () => {
    const known = new Set(['output_plugin_libraries'])
    const pglogical = desiredSettings({ spec, port: 1, socketDir: '/r', logDir: '/l', library: 'pglogical', serverParameters: known })
    expect(pglogical.get('output_plugin_libraries')).toBe("'pgoutput, test_decoding, pglogical_output'")
    const spock = desiredSettings({ spec, port: 1, socketDir: '/r', logDir: '/l', library: 'spock', serverParameters: known })
    expect(spock.get('output_plugin_libraries')).toBe("'pgoutput, test_decoding, spock_output'")
    const own = desiredSettings({
      spec: { ...spec, postgresqlConf: { output_plugin_libraries: 'wal2json' } }, port: 1, socketDir: '/r', logDir: '/l', library: 'pglogical', serverParameters: known
    })
    expect(own.get('output_plugin_libraries')).toBe("'wal2json, pglogical_output'")
    // An older minor would refuse to start with a parameter it does not know.
    const older = desiredSettings({
      spec: { ...spec, postgresqlConf: { output_plugin_libraries: 'wal2json' } }, port: 1, socketDir: '/r', logDir: '/l', library: 'pglogical', serverParameters: new Set()
    })
    expect(older.has('output_plugin_libraries')).toBe(false)
  })

  it('merges the spec over the defaults but keeps the replication library preloaded', () => {
    const settings = desiredSettings({
      spec: { ...spec, postgresqlConf: { Work_Mem: '8MB', max_connections: 50, shared_preload_libraries: 'auto_explain' } },
      port: 1, socketDir: '/r', logDir: '/l', library: 'pglogical'
    })
    expect(settings.get('work_mem')).toBe("'8MB'")
    expect(settings.get('max_connections')).toBe('50')
    expect(settings.get('shared_preload_libraries')).toBe("'auto_explain,pglogical'")
  })

  it('adds the standby settings of a streaming replica', () => {
    const settings = desiredSettings({
      spec, port: 1, socketDir: '/r', logDir: '/l', library: 'pglogical',
      standbyOf: { host: '10.0.0.1', port: 5432, slotName: 'pgmesh_db1_n1_abc' }
    })
    expect(settings.get('primary_conninfo')).toBe("'host=10.0.0.1 port=5432 user=pgmesh application_name=pgmesh_db1_n1_abc'")
    expect(settings.get('primary_slot_name')).toBe("'pgmesh_db1_n1_abc'")
  })

  it('rejects settings the orchestrator owns and names that are not GUC names', () => {
    const input = (conf: Record<string, string>) => ({ spec: { ...spec, postgresqlConf: conf }, port: 1, socketDir: '/r', logDir: '/l', library: 'pglogical' as const })
    expect(() => desiredSettings(input({ port: '5' }))).toThrow(/managed by the orchestrator/)
    expect(() => desiredSettings(input({ hba_file: '/x' }))).toThrow(/managed by the orchestrator/)
    expect(() => desiredSettings(input({ "x = 1\nssl": 'on' }))).toThrow(/invalid setting name/)
  })

  it('quotes values the way the server parses them', () => {
    expect(renderSettingValue("it's \\ here")).toBe("'it''s \\\\ here'")
    expect(renderSettingValue(true)).toBe('on')
    expect(renderSettingValue(0.5)).toBe('0.5')
    expect(() => renderSettingValue('a\nb')).toThrow(/line breaks/)
  })

  it('formats libpq conninfo values, quoting where needed', () => {
    expect(formatConninfo({ host: '/tmp/a b', user: "o'k", port: '1' })).toBe("host='/tmp/a b' user='o\\'k' port=1")
  })
})

describe('pg_hba.conf rendering', () => {
  it('puts system rules first, user rules next and the scram catch-all last', () => {
    expect(renderHba({ peerAddresses: ['10.0.0.2', 'fd00::2'], pgHbaConf: ['host app alice 10.9.0.0/24 scram-sha-256'] }))
      .toMatchInlineSnapshot(`
        "# Written by pgmesh; edits are overwritten. Add rules through the database spec (pg_hba_conf).
        # system: the control plane over the unix socket (socket is 0700, owned by the postgres OS user)
        local all pgmesh trust
        host replication pgmesh 10.0.0.2/32 scram-sha-256
        host all pgmesh 10.0.0.2/32 scram-sha-256
        host replication pgmesh fd00::2/128 scram-sha-256
        host all pgmesh fd00::2/128 scram-sha-256
        # user rules
        host app alice 10.9.0.0/24 scram-sha-256
        # catch-all
        local all all scram-sha-256
        host all all all scram-sha-256
        "
      `)
  })

  it('rejects peer addresses that are not plain IPs (a network would let in every host in it) and multi-line rules', () => {
    expect(() => renderHba({ peerAddresses: ['0.0.0.0/0 trust\nhost all all all'] })).toThrow(/invalid peer address/)
    expect(() => renderHba({ peerAddresses: ['0.0.0.0/0'] })).toThrow(/invalid peer address '0.0.0.0\/0': must be one IP address, not a network/)
    expect(() => renderHba({ peerAddresses: ['10.1.0.0/16'] })).toThrow(/invalid peer address/)
    expect(() => renderHba({ pgHbaConf: ['host all all all trust\nlocal all all trust'] })).toThrow(/single line/)
  })
})

describe('role attributes', () => {
  it('accepts the allow-list in any case and rejects anything else', () => {
    expect(roleAttributes(['login', 'NoSuperuser']).map(a => a.keyword)).toEqual(['LOGIN', 'NOSUPERUSER'])
    expect(() => roleAttributes(['LOGIN PASSWORD NULL'])).toThrow(/unsupported role attribute/)
    expect(() => roleAttributes(['CONNECTION LIMIT 1'])).toThrow(/unsupported role attribute/)
  })
})
