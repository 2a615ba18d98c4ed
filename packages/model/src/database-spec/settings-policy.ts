/**
 * Which `postgresql_conf` settings a spec may set (issue 16: a spec cannot run code). The anchor has no allow-list
 * (it rejects only `hba_file`/`ident_file` and requires `spock` in `shared_preload_libraries`), and Postgres has
 * ~350 settings that users legitimately tune, so this is a deny-list by family, each with its reason, plus a
 * library allow-list and checks on every key and value. The families:
 *
 * - **commands**: a shell command the server runs as the postgres OS user (archiving, recovery, TLS passphrase);
 * - **libraries**: a shared library loaded into the server, by name or from a directory the spec would choose;
 * - **files**: a path the server reads, writes or creates files at (includes, TLS keys, sockets, logs, pid files);
 * - **privileges**: settings that switch Postgres's own permission checks off;
 * - **owned**: what the orchestrator derives itself (ports, addresses, directories, replication wiring); these were
 *   refused late by the orchestrator (`ORCHESTRATOR_OWNED_SETTINGS` is that list, which it keeps as a second guard).
 *
 * `log_filename` stays settable (the anchor sets it too) but must be a file name: a `/` would place the server's
 * log files outside its log directory.
 */

/** Settings the orchestrator derives itself; the orchestrator refuses them too (postgres-config.ts). */
export const ORCHESTRATOR_OWNED_SETTINGS: ReadonlySet<string> = new Set([
  'port', 'listen_addresses', 'unix_socket_directories', 'unix_socket_permissions', 'cluster_name',
  'primary_conninfo', 'primary_slot_name', 'log_directory',
  'hba_file', 'ident_file', 'config_file', 'data_directory', 'external_pid_file'
])

const COMMANDS = 'runs a shell command as the server\'s OS user'
const LIBRARIES = 'loads a shared library into the server'
const FILES = 'names a file or directory on the server'
const PRIVILEGES = 'switches off Postgres\'s own permission checks'

const DENIED: ReadonlyMap<string, string> = new Map([
  ...['archive_command', 'restore_command', 'archive_cleanup_command', 'recovery_end_command', 'ssl_passphrase_command',
    'ssl_passphrase_command_supports_reload'].map(name => [name, COMMANDS] as const),
  ...['archive_library', 'local_preload_libraries', 'session_preload_libraries', 'dynamic_library_path', 'jit_provider']
    .map(name => [name, LIBRARIES] as const),
  ...['include', 'include_dir', 'include_if_exists', 'ssl_cert_file', 'ssl_key_file', 'ssl_ca_file', 'ssl_crl_file',
    'ssl_crl_dir', 'ssl_dh_params_file', 'krb_server_keyfile', 'unix_socket_group', 'stats_temp_directory', 'log_file_mode']
    .map(name => [name, FILES] as const),
  ...['lo_compat_privileges', 'allow_system_table_mods'].map(name => [name, PRIVILEGES] as const)
])

/**
 * Libraries a spec may preload: the replication extensions (the anchor requires `spock`; pgmesh also runs
 * `pglogical`), the anchor's defaults (`pg_stat_statements`, `snowflake`, `lolor`) and a few contrib/common ones
 * that only observe or schedule. Names only: a path (`/tmp/x.so`, `$libdir/x`) is never allowed.
 */
export const ALLOWED_PRELOAD_LIBRARIES: ReadonlySet<string> = new Set([
  'spock', 'pglogical', 'pg_stat_statements', 'snowflake', 'lolor', 'auto_explain', 'pg_prewarm', 'pgaudit', 'pg_cron'
])
/** The replication extension must stay loaded (either satisfies the anchor's rule). */
export const REPLICATION_LIBRARIES: ReadonlySet<string> = new Set(['spock', 'pglogical'])

/** Postgres GUC names (`work_mem`, `pglogical.conflict_resolution`), compared case-insensitively. */
const SETTING_NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/
export const MAX_SETTING_NAME_LENGTH = 63
export const MAX_SETTING_VALUE_LENGTH = 4096
/** Line breaks would start a new line of postgresql.conf (a setting the spec did not name); NUL ends the file. */
const LINE_BREAK_OR_NUL = /[\r\n\0]/

/** How Postgres compares setting names: case-insensitively, and the renderer trims nothing. */
export function settingName (key: string): string {
  return key.trim().toLowerCase()
}

/** Why a spec may not set `key` to `value`, or undefined when it may. Messages never echo the value. */
export function settingProblem (key: string, value: unknown): string | undefined {
  const name = settingName(key)
  if (name.length > MAX_SETTING_NAME_LENGTH || !SETTING_NAME.test(name)) {
    return `invalid setting name: must be a Postgres parameter name (letters, digits and underscores, optionally one dot; at most ${MAX_SETTING_NAME_LENGTH} characters)`
  }
  if (ORCHESTRATOR_OWNED_SETTINGS.has(name)) return `${JSON.stringify(name)} is managed by the orchestrator and cannot be set`
  const reason = DENIED.get(name)
  if (reason !== undefined) return `${JSON.stringify(name)} is not allowed: it ${reason}`
  if (typeof value === 'number') return numberProblem(value)
  if (typeof value === 'boolean') return undefined
  if (typeof value !== 'string') return 'must be a string, number or boolean'
  if (value.length > MAX_SETTING_VALUE_LENGTH) return `must be at most ${MAX_SETTING_VALUE_LENGTH} characters long`
  if (LINE_BREAK_OR_NUL.test(value)) return 'must not contain line breaks or NUL'
  if (name === 'shared_preload_libraries') return preloadProblem(value)
  if (name === 'log_filename' && /[/\\]/.test(value)) return 'must be a file name, without "/"'
  return undefined
}

/**
 * The cluster document (Automerge) keeps integer-valued numbers as 64-bit integers: from 2^53 − 1 up they come back
 * as BigInt (which JSON cannot render), and beyond 2^63 they are cut. Nothing Postgres takes is that large.
 */
export const MAX_NUMBER = 1e15

export function numberProblem (value: number): string | undefined {
  return Number.isFinite(value) && Math.abs(value) <= MAX_NUMBER ? undefined : `must be a finite number between -${MAX_NUMBER} and ${MAX_NUMBER}`
}

/** Free-form JSON (a service's config) the document can keep: numbers as above, at most `maxDepth` levels. */
export function isStorableJson (value: unknown, maxDepth = 16): boolean {
  if (typeof value === 'number') return numberProblem(value) === undefined
  if (typeof value !== 'object' || value === null) return true
  if (maxDepth <= 0) return false
  return Object.values(value).every(item => isStorableJson(item, maxDepth - 1))
}

function preloadProblem (value: string): string | undefined {
  const libraries = value.split(',').map(library => library.trim().replace(/^"(.*)"$/, '$1')).filter(library => library !== '')
  const refused = libraries.filter(library => !ALLOWED_PRELOAD_LIBRARIES.has(library))
  if (refused.length > 0) {
    const shown = refused.slice(0, 3).map(library => JSON.stringify(library.slice(0, 64))).join(', ')
    return `library ${shown} is not allowed: shared_preload_libraries may list only ${[...ALLOWED_PRELOAD_LIBRARIES].join(', ')}`
  }
  if (!libraries.some(library => REPLICATION_LIBRARIES.has(library))) {
    return '"spock" must be included in shared_preload_libraries (or "pglogical" where Spock is not available)'
  }
  return undefined
}
