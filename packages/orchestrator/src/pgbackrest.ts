import { posix } from 'node:path'
import { type BackupRepositorySpec, type BackupRun, type InstanceBackup, type InstanceRestore, InvalidInputError, pgbackrestOptionProblem, pgbackrestValueProblem, SYSTEM_SUPERUSER } from '@pgmesh/model'

/** The anchor's stanza name: one stanza per node, in a repository path of its own. */
export const STANZA = 'db'
/** What archive_command is without backups: archive_mode stays on, so turning backups on or off is a reload. */
export const NO_ARCHIVING = '/bin/true'

/** Where one instance's pgBackRest files are (each an absolute path the Postgres OS user owns). */
export interface PgbackrestPaths {
  /** The config file (0600): it holds the repositories' keys. */
  config: string
  pgdata: string
  socketDir: string
  port: number
  lockDir: string
  logDir: string
}

/**
 * The anchor's repository layout, so a repository written by either can be read by the other:
 * `<base_path>/databases/<database_id>/<repo id>/<node_name>`. A repository without an id uses `default`.
 */
export function repositoryPath (repo: Pick<BackupRepositorySpec, 'id' | 'base_path'>, databaseId: string, nodeName: string): string {
  return posix.join('/', repo.base_path ?? '', 'databases', databaseId, repo.id ?? 'default', nodeName)
}

/** A value as a pgBackRest config line takes it: one line, no NUL (newlines would add options of their own). */
function line (name: string, value: string | number): string {
  const text = String(value)
  const problem = pgbackrestValueProblem(text)
  if (problem !== undefined) throw new InvalidInputError(`pgBackRest option ${name}: ${problem}`)
  return `${name}=${text}`
}

/**
 * The repository options of repo `n` (1-based), defaults as the anchor's (retention 7, by time; no cipher). A restore
 * source has no retention: it is only read.
 */
function repositoryLines (repo: BackupRepositorySpec, n: number, backup: Pick<InstanceBackup, 'databaseId' | 'nodeName'>, retention = true): string[] {
  const p = `repo${n}-`
  const out = [
    line(`${p}type`, repo.type === 'cifs' ? 'cifs' : repo.type),
    line(`${p}path`, repositoryPath(repo, backup.databaseId, backup.nodeName)),
    line(`${p}cipher-type`, 'none')
  ]
  if (retention) out.push(line(`${p}retention-full`, repo.retention_full ?? 7), line(`${p}retention-full-type`, repo.retention_full_type ?? 'time'))
  if (repo.type === 's3') {
    out.push(line(`${p}s3-bucket`, repo.s3_bucket ?? ''), line(`${p}s3-region`, repo.s3_region ?? 'us-east-1'),
      line(`${p}s3-endpoint`, repo.s3_endpoint ?? (repo.s3_region === undefined ? 's3.amazonaws.com' : `s3.${repo.s3_region}.amazonaws.com`)))
    if (repo.s3_key !== undefined && repo.s3_key_secret !== undefined) {
      out.push(line(`${p}s3-key-type`, 'shared'), line(`${p}s3-key`, repo.s3_key), line(`${p}s3-key-secret`, repo.s3_key_secret))
    } else {
      out.push(line(`${p}s3-key-type`, 'auto'))
    }
  } else if (repo.type === 'gcs') {
    out.push(line(`${p}gcs-bucket`, repo.gcs_bucket ?? ''), line(`${p}gcs-endpoint`, repo.gcs_endpoint ?? 'storage.googleapis.com'))
    out.push(line(`${p}gcs-key-type`, repo.gcs_key === undefined ? 'auto' : 'service'))
    // pgBackRest reads a service key from a file only; not supported on this orchestrator yet (see the README).
    if (repo.gcs_key !== undefined) throw new InvalidInputError('gcs repositories with gcs_key are not supported yet')
  } else if (repo.type === 'azure') {
    out.push(line(`${p}azure-account`, repo.azure_account ?? ''), line(`${p}azure-container`, repo.azure_container ?? ''),
      line(`${p}azure-endpoint`, repo.azure_endpoint ?? 'blob.core.windows.net'), line(`${p}azure-uri-style`, 'host'),
      line(`${p}azure-key-type`, 'shared'), line(`${p}azure-key`, repo.azure_key ?? ''))
  }
  for (const [rawName, value] of Object.entries(repo.custom_options ?? {})) {
    const problem = pgbackrestOptionProblem(rawName)
    if (problem !== undefined) throw new InvalidInputError(`custom_options[${rawName}]: ${problem}`)
    // Repository options, under this repository's prefix (a `repoN-` the user gave is replaced, as the anchor does).
    out.push(line(`${p}${rawName.replace(/^repo[0-9]+-/, '')}`, value))
  }
  return out
}

/** The instance's pgBackRest config file: every repository, and how pgBackRest reaches this server. */
export function renderPgbackrestConf (backup: InstanceBackup, paths: PgbackrestPaths): string {
  return renderConf('# Written by pgmesh; edits are overwritten. Holds repository keys: keep it 0600.', ['start-fast=y'],
    backup.repositories.flatMap((repo, i) => repositoryLines(repo, i + 1, backup)), paths)
}

/** A config file: its global section (logs, locks, the repositories) and the stanza of this server. */
function renderConf (header: string, globalOptions: string[], repositories: string[], paths: PgbackrestPaths): string {
  const lines = [
    header,
    '[global]',
    ...globalOptions,
    'log-level-console=info',
    'log-level-file=info',
    line('log-path', paths.logDir),
    line('lock-path', paths.lockDir),
    ...repositories,
    '',
    `[${STANZA}]`,
    line('pg1-path', paths.pgdata),
    line('pg1-socket-path', paths.socketDir),
    line('pg1-port', paths.port),
    line('pg1-user', SYSTEM_SUPERUSER)
  ]
  return lines.join('\n') + '\n'
}

/** Quoted for archive_command, which runs it through the shell: only pgmesh's own paths go in, never a spec's text. */
function shellQuote (value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`
}

/** archive_command with backups configured: pgBackRest pushes each WAL segment (a replica never archives). */
export function archiveCommand (pgbackrest: string, configFile: string): string {
  return `${shellQuote(pgbackrest)} --config=${shellQuote(configFile)} --stanza=${STANZA} archive-push %p`
}

/** `pgbackrest <command>` arguments for the stanza, with the config file (no secrets: those stay in the file). */
export function pgbackrestArgs (configFile: string, command: string, extra: string[] = []): string[] {
  return [`--config=${configFile}`, `--stanza=${STANZA}`, ...extra, command]
}

/** The arguments of one backup: `--type`, annotations and the request's options, each checked again here. */
export function backupArgs (configFile: string, run: BackupRun): string[] {
  const extra = ['--log-timestamp=n', `--type=${run.type}`]
  for (const [key, value] of Object.entries(run.annotations ?? {})) {
    const problem = pgbackrestValueProblem(key) ?? pgbackrestValueProblem(value) ?? (key.includes('=') ? 'must not contain =' : undefined)
    if (problem !== undefined) throw new InvalidInputError(`annotations[${key}]: ${problem}`)
    extra.push(`--annotation=${key}=${value}`)
  }
  for (const [name, value] of Object.entries(run.options ?? {})) {
    const problem = pgbackrestOptionProblem(name) ?? pgbackrestValueProblem(value)
    if (problem !== undefined) throw new InvalidInputError(`backup_options[${name}]: ${problem}`)
    extra.push(`--${name}=${value}`)
  }
  return pgbackrestArgs(configFile, 'backup', extra)
}

/**
 * The config file of an in-place restore (0600, beside the instance's own): the source node's repository as repo1,
 * and this instance's data directory. Recovery reads WAL through it (restore_command), so it stays until the restored
 * server has been promoted.
 */
export function renderRestoreConf (restore: InstanceRestore, paths: PgbackrestPaths): string {
  return renderConf('# Written by pgmesh for a restore; removed once it is done. Holds repository keys: keep it 0600.', [],
    repositoryLines(restore.repository, 1, { databaseId: restore.sourceDatabaseId, nodeName: restore.sourceNodeName }, false), paths)
}

/** Recovery-target types pgBackRest takes, for which the anchor adds `--target-action=promote` when none is given. */
const TARGET_TYPES = new Set(['time', 'lsn', 'xid', 'name', 'immediate'])

/**
 * The arguments of `pgbackrest restore`: the user's restore_options (checked again here), and, as the anchor does,
 * `--target-action=promote` when a target type is given without an action (pgBackRest's default pauses instead).
 */
export function restoreArgs (configFile: string, options: Readonly<Record<string, string>>): string[] {
  const extra = ['--log-timestamp=n']
  for (const [name, value] of Object.entries(options)) {
    const problem = pgbackrestOptionProblem(name, ['type']) ?? pgbackrestValueProblem(value)
    if (problem !== undefined) throw new InvalidInputError(`restore_options[${name}]: ${problem}`)
    extra.push(`--${name}=${value}`)
  }
  const type = options.type
  if (type !== undefined && TARGET_TYPES.has(type) && options['target-action'] === undefined) extra.push('--target-action=promote')
  return pgbackrestArgs(configFile, 'restore', extra)
}
