/**
 * Defaults and node-level resolution. Pure functions over validated specs; they return new values.
 */
import type {
  BackupConfigSpec, BackupRepositorySpec, DatabaseSpec, OrchestratorOpts, RestoreConfigSpec
} from './schemas.js'
import { cloneTree } from './clone.js'
import { parseBytes, parseCpus } from './units.js'

export const DEFAULT_SPOCK_VERSION = '5'

export interface SpecDefaultOptions {
  /**
   * Postgres version ('major.minor') to use when the spec names none. The anchor takes the greatest common default
   * of the hosts' manifests; pgmesh hosts report the Postgres they run, so the caller passes that in.
   */
  defaultPostgresVersion: string
  /** Spock major version when the spec names none; defaults to DEFAULT_SPOCK_VERSION. */
  defaultSpockVersion?: string | undefined
  /**
   * The stored spec, on update. As in the anchor, versions an update leaves out are kept from it (database level,
   * and per node for nodes with the same name) before host defaults apply, so an update never silently moves a
   * database to the host's default version.
   */
  previous?: DatabaseSpec | undefined
}

/** Fills postgres_version and spock_version the way the anchor's create/update does; nothing else is defaulted. */
export function applyDefaults (spec: DatabaseSpec, options: SpecDefaultOptions): DatabaseSpec {
  const out = cloneTree(spec)
  const previous = options.previous
  out.postgres_version ??= previous?.postgres_version ?? options.defaultPostgresVersion
  out.spock_version ??= previous?.spock_version ?? options.defaultSpockVersion ?? DEFAULT_SPOCK_VERSION
  if (previous !== undefined) {
    const previousVersions = new Map(previous.nodes.map(node => [node.name, node.postgres_version]))
    for (const node of out.nodes) {
      const kept = previousVersions.get(node.name)
      if (node.postgres_version === undefined && kept !== undefined) node.postgres_version = kept
    }
  }
  return out
}

/** A node with database-level values resolved under its overrides: what one node's instances should run. */
export interface EffectiveNode {
  name: string
  /** The number in the node name (`n3` → 3), used for snowflake.node / lolor.node. */
  ordinal: number
  host_ids: string[]
  postgres_version: string | undefined
  spock_version: string | undefined
  port: number | undefined
  patroni_port: number | undefined
  cpus: string | undefined
  memory: string | undefined
  /** Database-level settings with the node's merged over them. */
  postgresql_conf: Record<string, unknown>
  /** Node entries first so they win Postgres' first-match, then database-level entries. */
  pg_hba_conf: string[]
  pg_ident_conf: string[]
  backup_config: BackupConfigSpec | undefined
  /** Undefined for a node that syncs from a source_node: it is populated from that node, not restored. */
  restore_config: RestoreConfigSpec | undefined
  orchestrator_opts: OrchestratorOpts | undefined
  source_node: string | undefined
}

/**
 * Resolves node `nodeName` of `spec` as the anchor does (Spec.NodeInstances): a node value overrides when set —
 * for cpus and memory only when non-zero, since the anchor stores them as numbers where 0 means "inherit"; ports
 * override whenever present (0 means "random port", not "inherit"). backup/restore config and orchestrator_opts
 * replace the database-level value wholesale. Undefined when the spec has no such node.
 */
export function effectiveNode (spec: DatabaseSpec, nodeName: string): EffectiveNode | undefined {
  const node = spec.nodes.find(candidate => candidate.name === nodeName)
  if (node === undefined) return undefined
  return cloneTree({
    name: node.name,
    ordinal: Number(node.name.slice(1)),
    host_ids: node.host_ids,
    postgres_version: nonEmpty(node.postgres_version) ?? spec.postgres_version,
    spock_version: spec.spock_version,
    port: node.port ?? spec.port,
    patroni_port: node.patroni_port ?? spec.patroni_port,
    cpus: isNonZeroCpus(node.cpus) ? node.cpus : spec.cpus,
    memory: isNonZeroMemory(node.memory) ? node.memory : spec.memory,
    postgresql_conf: { ...spec.postgresql_conf, ...node.postgresql_conf },
    pg_hba_conf: [...(node.pg_hba_conf ?? []), ...(spec.pg_hba_conf ?? [])],
    pg_ident_conf: [...(node.pg_ident_conf ?? []), ...(spec.pg_ident_conf ?? [])],
    backup_config: node.backup_config ?? spec.backup_config,
    restore_config: nonEmpty(node.source_node) === undefined ? node.restore_config ?? spec.restore_config : undefined,
    orchestrator_opts: node.orchestrator_opts ?? spec.orchestrator_opts,
    source_node: nonEmpty(node.source_node)
  })
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === '' ? undefined : value
}

function isNonZeroCpus (cpus: string | undefined): cpus is string {
  return cpus !== undefined && (parseCpus(cpus) ?? 0) > 0
}

function isNonZeroMemory (memory: string | undefined): memory is string {
  if (memory === undefined) return false
  const bytes = parseBytes(memory)
  return bytes.ok && bytes.value > 0
}

/**
 * A backup repository with the values pgBackRest is configured with when the spec leaves them out (anchor:
 * pgbackrest Repository.WithDefaults): endpoints per provider, retention 7 by time. Kept out of applyDefaults
 * because the anchor never stores or returns these.
 */
export function repositoryWithDefaults (repo: BackupRepositorySpec): BackupRepositorySpec {
  const out = cloneTree(repo)
  if (out.type === 's3' && isBlank(out.s3_endpoint)) {
    out.s3_endpoint = isBlank(out.s3_region) ? 's3.amazonaws.com' : `s3.${out.s3_region ?? ''}.amazonaws.com`
  }
  if (out.type === 'gcs' && isBlank(out.gcs_endpoint)) out.gcs_endpoint = 'storage.googleapis.com'
  if (out.type === 'azure' && isBlank(out.azure_endpoint)) out.azure_endpoint = 'blob.core.windows.net'
  out.retention_full_type ??= 'time'
  out.retention_full ??= 7
  return out
}

function isBlank (value: string | undefined): boolean {
  return value === undefined || value === ''
}
