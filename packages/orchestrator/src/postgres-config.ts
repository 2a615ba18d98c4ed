import { isIP } from 'node:net'
import { type InstanceSpec, InvalidInputError, ORCHESTRATOR_OWNED_SETTINGS, type SettingValue, settingProblem, SYSTEM_SUPERUSER } from '@pgmesh/model'

/**
 * libpq `options` of the control plane's own sessions: their commits never wait for synchronous standbys (a standby
 * that is gone must not block a host), and their DDL (replication setup, users, scripts) stays on the node they run
 * on, since each node's primary runs that setup itself (see @pgmesh/replication's DDL capture).
 */
export const CONTROL_SESSION_OPTIONS = '-c synchronous_commit=local -c pgmesh.replicate_ddl=off'

export type ReplicationLibrary = 'pglogical' | 'spock'


/**
 * The anchor's base GUCs (research §2.8) that apply to a process instance. Left out: ssl (no certificates yet),
 * snowflake/lolor (not packaged), memory/CPU tuning (a process shares the host). archive_command is the
 * orchestrator's (pgBackRest's archive-push with backups configured); archive_mode is on so adding them needs no restart.
 */
function baseSettings (library: ReplicationLibrary): Record<string, SettingValue> {
  const common: Record<string, SettingValue> = {
    archive_mode: true,
    archive_command: '/bin/true',
    checkpoint_completion_target: 0.9,
    checkpoint_timeout: '15min',
    dynamic_shared_memory_type: 'posix',
    hot_standby_feedback: true,
    logging_collector: true,
    // jsonlog too: the reconciler reads why a subscription's apply worker fails from it (no catalog keeps that).
    log_destination: 'stderr,jsonlog',
    log_filename: 'postgresql-%a.log',
    log_rotation_age: '1d',
    log_truncate_on_rotation: true,
    log_line_prefix: '%m [%p] ',
    password_encryption: 'scram-sha-256',
    shared_preload_libraries: `pg_stat_statements,${library}`,
    track_commit_timestamp: true,
    track_io_timing: true,
    wal_level: 'logical',
    wal_log_hints: true,
    wal_sender_timeout: '5s',
    // pglogical needs a supervisor, a manager per database and an apply worker per subscription, plus sync workers.
    max_worker_processes: 16,
    max_replication_slots: 16,
    max_wal_senders: 16
  }
  if (library === 'pglogical') {
    // Without track_commit_timestamp pglogical silently falls back to apply_remote, which diverges (research §C).
    return { ...common, 'pglogical.conflict_resolution': 'last_update_wins' }
  }
  return {
    ...common,
    'spock.enable_ddl_replication': true,
    'spock.include_ddl_repset': true,
    'spock.allow_ddl_from_functions': true,
    'spock.conflict_resolution': 'last_update_wins',
    'spock.save_resolutions': true,
    'spock.conflict_log_level': 'DEBUG'
  }
}

const SETTING_NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/

/** Renders one value the way postgresql.conf parses it: strings single-quoted with `''` and `\\` escaped. */
export function renderSettingValue (value: SettingValue): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off'
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new InvalidInputError(`invalid setting value ${value}`)
    return String(value)
  }
  if (/[\r\n\0]/.test(value)) throw new InvalidInputError('setting values cannot contain line breaks or NUL')
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`
}

export interface StandbyOf { host: string, port: number, slotName: string }

interface SettingsInput {
  spec: Pick<InstanceSpec, 'instanceId' | 'listenAddresses' | 'postgresqlConf'>
  port: number
  socketDir: string
  logDir: string
  library: ReplicationLibrary
  /** Set while the instance is a streaming replica. */
  standbyOf?: StandbyOf
  /** With backups configured: pgBackRest's archive-push (see pgbackrest.ts); without, WAL is not archived. */
  archiveCommand?: string
  /**
   * The parameters this server knows (`postgres --describe-config`); settings that only some minor versions have
   * are written only where the server has them, since an unknown name in postgresql.conf stops the server.
   */
  serverParameters?: ReadonlySet<string>
}

/** The logical-decoding output plugin each replication library's walsenders load. */
const OUTPUT_PLUGIN: Record<ReplicationLibrary, string> = { pglogical: 'pglogical_output', spock: 'spock_output' }
/** Its server default; the minors that added it (15.19, 16.15, 17.11, 18.6) refuse any output plugin not listed. */
const DEFAULT_OUTPUT_PLUGIN_LIBRARIES = 'pgoutput, test_decoding'

/** Splits a comma-separated library list and appends `required` when missing. */
function withLibrary (list: SettingValue | undefined, required: string): string {
  const libraries = String(list ?? '').split(',').map(l => l.trim()).filter(l => l !== '')
  if (!libraries.includes(required)) libraries.push(required)
  return libraries.join(', ')
}

/** Every setting the orchestrator writes, already rendered (name → value text), in a stable order. */
export function desiredSettings (input: SettingsInput): Map<string, string> {
  const merged: Record<string, SettingValue> = { ...baseSettings(input.library) }
  for (const [rawName, value] of Object.entries(input.spec.postgresqlConf ?? {})) {
    const name = rawName.toLowerCase()
    if (!SETTING_NAME.test(name)) throw new InvalidInputError(`invalid setting name '${rawName}'`)
    if (ORCHESTRATOR_OWNED_SETTINGS.has(name)) throw new InvalidInputError(`'${name}' is managed by the orchestrator and cannot be set`)
    // The API refuses these already (the model's settings policy); a spec that reached the document another way
    // (a peer, an older host) is refused here too.
    // (The replication library is added below whatever the spec lists, so only the list's other entries matter.)
    const problem = settingProblem(rawName, name === 'shared_preload_libraries' ? withLibrary(value, input.library) : value)
    if (problem !== undefined) throw new InvalidInputError(`postgresql_conf[${name}]: ${problem}`)
    merged[name] = value
  }
  // Replication cannot work without its library, so it stays preloaded (and its output plugin allowed) whatever
  // the spec lists.
  merged.shared_preload_libraries = withLibrary(merged.shared_preload_libraries, input.library).replaceAll(', ', ',')
  if (input.serverParameters?.has('output_plugin_libraries') === true) {
    merged.output_plugin_libraries = withLibrary(merged.output_plugin_libraries ?? DEFAULT_OUTPUT_PLUGIN_LIBRARIES, OUTPUT_PLUGIN[input.library])
  } else {
    delete merged.output_plugin_libraries
  }

  if (input.spec.listenAddresses.length === 0) throw new InvalidInputError('listenAddresses must not be empty')
  Object.assign(merged, {
    port: input.port,
    listen_addresses: input.spec.listenAddresses.join(','),
    // Outside pgdata: pg_basebackup chokes on sockets inside it, and socket paths are limited to ~107 bytes.
    unix_socket_directories: input.socketDir,
    // Only the postgres OS user (and root) may use the socket, which the superuser reaches with trust auth.
    unix_socket_permissions: '0700',
    cluster_name: input.spec.instanceId,
    log_directory: input.logDir,
    // archive_mode is on either way, so switching backups on or off is a reload.
    archive_command: input.archiveCommand ?? '/bin/true'
  })
  if (input.standbyOf !== undefined) {
    merged.primary_conninfo = formatConninfo({
      host: input.standbyOf.host,
      port: String(input.standbyOf.port),
      user: SYSTEM_SUPERUSER,
      application_name: input.standbyOf.slotName
    })
    merged.primary_slot_name = input.standbyOf.slotName
  }
  return new Map(Object.entries(merged).map(([name, value]) => [name, renderSettingValue(value)]))
}

export function renderManagedConf (settings: Map<string, string>): string {
  const lines = ['# Written by pgmesh; edits are overwritten. Set values through the database spec instead.']
  for (const [name, value] of settings) lines.push(`${name} = ${value}`)
  return lines.join('\n') + '\n'
}

/** libpq key=value connection string; values quoted when they need it. */
export function formatConninfo (params: Record<string, string>): string {
  return Object.entries(params).map(([key, value]) => {
    const plain = value !== '' && /^[^\s'\\]+$/.test(value)
    return `${key}=${plain ? value : `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`}`
  }).join(' ')
}

/** A host's client address as one-host CIDR; a network is refused (its every host would reach the superuser). */
function peerCidr (address: string): string {
  const family = isIP(address)
  if (family === 0) throw new InvalidInputError(`invalid peer address '${address}': must be one IP address, not a network`)
  return `${address}/${family === 4 ? 32 : 128}`
}

function singleLine (kind: string, line: string): string {
  if (/[\r\n\0]/.test(line)) throw new InvalidInputError(`each ${kind} entry must be a single line`)
  return line
}

/**
 * pg_hba.conf: system rules first (first match wins), then the spec's rules, then a catch-all that requires a
 * scram password. pglogical's walsender connections match on the database name, not on `replication`, so peers
 * need an `all` rule besides the `replication` one (research §C).
 */
export function renderHba (spec: Pick<InstanceSpec, 'peerAddresses' | 'pgHbaConf'>): string {
  const lines = [
    '# Written by pgmesh; edits are overwritten. Add rules through the database spec (pg_hba_conf).',
    '# system: the control plane over the unix socket (socket is 0700, owned by the postgres OS user)',
    `local all ${SYSTEM_SUPERUSER} trust`
  ]
  for (const address of spec.peerAddresses ?? []) {
    const cidr = peerCidr(address)
    // By password (the cluster-wide one derived from the data key), never trust: an address says nothing of which
    // OS user on that host is connecting.
    lines.push(`host replication ${SYSTEM_SUPERUSER} ${cidr} scram-sha-256`, `host all ${SYSTEM_SUPERUSER} ${cidr} scram-sha-256`)
  }
  lines.push('# user rules')
  for (const rule of spec.pgHbaConf ?? []) lines.push(singleLine('pg_hba_conf', rule))
  lines.push('# catch-all', 'local all all scram-sha-256', 'host all all all scram-sha-256')
  return lines.join('\n') + '\n'
}

export function renderIdent (spec: Pick<InstanceSpec, 'pgIdentConf'>): string {
  const lines = ['# Written by pgmesh; edits are overwritten.']
  for (const mapping of spec.pgIdentConf ?? []) lines.push(singleLine('pg_ident_conf', mapping))
  return lines.join('\n') + '\n'
}
