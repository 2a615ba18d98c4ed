/**
 * The database spec as zod schemas: one source for request validation, the TypeScript types (z.infer) and the
 * OpenAPI document (`.openapi('Name')` registers each as a named component). Field names, limits and required
 * fields follow the anchor's Goa design (api/apiv1/design/database.go) exactly.
 *
 * The schemas check shape and per-field limits only. Rules that look across fields (unique names, source nodes,
 * ports per host, per-type repository fields, …) live in validate.ts, so they can report every problem at once with
 * the anchor's messages.
 *
 * Objects are strict: an unknown field is an error (`unknown field`), where the anchor's Go decoder would silently
 * drop it — a typo such as `host_id` for `host_ids` should fail loudly, not create a different database.
 */
import { z } from '@hono/zod-openapi'
import { IDENTIFIER_MESSAGE, isIdentifier } from '../ids.js'
import { CPUS_PATTERN } from './units.js'

export const NODE_NAME_PATTERN = /^n[0-9]+$/
export const POSTGRES_VERSION_PATTERN = /^\d{2}\.\d{1,2}$/
export const SPOCK_VERSION_PATTERN = /^\d{1}$/
export const SERVICE_VERSION_PATTERN = /^(\d+\.\d+(\.\d+)?|latest)$/

export const REPOSITORY_TYPES = ['s3', 'gcs', 'azure', 'posix', 'cifs'] as const
export const SERVICE_TYPES = ['mcp', 'postgrest', 'rag'] as const
export const TARGET_SESSION_ATTRS = ['primary', 'prefer-standby', 'standby', 'read-write', 'any'] as const

export const MAX_NODES = 9
export const MAX_USERS = 16
export const MAX_POSTGRESQL_CONF_KEYS = 64
export const MAX_RESTORE_OPTIONS = 32

/** Error text for a value outside a closed set; undefined (missing value) defers to the generic message. */
function unsupportedValue (render: (input: string) => string) {
  return (issue: { input?: unknown }): string | undefined =>
    issue.input === undefined ? undefined : render(String(issue.input))
}

/**
 * The anchor's Identifier: 1–36 chars, lowercase letters, digits and hyphens, no leading/trailing/double hyphen.
 * One refinement with the anchor's message rather than min/max/regex, so a bad id yields exactly one line.
 */
export const IdentifierSchema = z.string()
  .refine(isIdentifier, { error: IDENTIFIER_MESSAGE })
  .openapi('Identifier', {
    description: 'A user-specified identifier. Must be 1-36 characters, contain only lower-cased letters, digits and hyphens, start and end with a letter or number, and not contain consecutive hyphens.',
    minLength: 1,
    maxLength: 36,
    example: 'production'
  })

const NodeNameSchema = z.string().regex(NODE_NAME_PATTERN)
const PortSchema = z.int().min(0).max(65535)
const CpusSchema = z.string().regex(CPUS_PATTERN).openapi({
  description: "CPUs to allocate, optionally with the SI suffix 'm' ('500m' = half a CPU). 0 or unset means all of the host's CPUs.",
  example: '0.5'
})
const MemorySchema = z.string().max(16).openapi({
  description: "Memory in SI or IEC notation ('16GiB', '500M'). Unset means the host's total memory.",
  example: '16GiB'
})
const StringMapSchema = z.record(z.string(), z.string())
const SqlScriptSchema = z.array(z.string().min(1).max(1024)).max(256).openapi('SQLScript', {
  description: 'Each element is one SQL statement.'
})

/** A map with at most `max` keys (zod records have no key-count check; the refinement keeps the anchor's limit). */
function limitedMap<T extends z.ZodType> (values: T, max: number) {
  return z.record(z.string(), values)
    .refine(map => Object.keys(map).length <= max, { error: `must have at most ${max} entries` })
    .openapi({ maxProperties: max })
}

export const ExtraVolumesSpecSchema = z.strictObject({
  host_path: z.string().max(256),
  destination_path: z.string().max(256)
}).openapi('ExtraVolumesSpec', { description: 'A host path bind-mounted into the database container.' })

export const ExtraNetworkSpecSchema = z.strictObject({
  id: z.string(),
  aliases: z.array(z.string()).max(8).optional(),
  driver_opts: StringMapSchema.optional()
}).openapi('ExtraNetworkSpec')

export const SwarmOptsSchema = z.strictObject({
  extra_volumes: z.array(ExtraVolumesSpecSchema).max(16).optional(),
  extra_networks: z.array(ExtraNetworkSpecSchema).max(8).optional(),
  extra_labels: StringMapSchema.optional(),
  image: z.string().optional()
}).openapi('SwarmOpts')

export const OrchestratorOptsSchema = z.strictObject({
  swarm: SwarmOptsSchema.optional()
}).openapi('OrchestratorOpts')

const secret = (max: number, what: string) => z.string().max(max).optional().openapi({
  description: `${what} Write-only: never returned; omit it on update to keep the stored value.`
})

/** Fields shared by backup and restore repositories (the restore one has no retention settings). */
const repositoryFields = {
  id: IdentifierSchema.optional(),
  type: z.enum(REPOSITORY_TYPES, { error: unsupportedValue(type => `unsupported repo type '${type}'`) }),
  s3_bucket: z.string().min(3).max(63).optional(),
  s3_region: z.string().min(1).max(32).optional(),
  s3_endpoint: z.string().min(3).max(128).optional(),
  s3_key: secret(128, 'AWS access key ID.'),
  s3_key_secret: secret(128, 'Secret for the AWS access key ID in s3_key.'),
  gcs_bucket: z.string().min(3).max(63).optional(),
  gcs_endpoint: z.string().min(3).max(128).optional(),
  gcs_key: secret(1024, 'Base64-encoded GCS service account key.'),
  azure_account: z.string().min(3).max(24).optional(),
  azure_container: z.string().min(3).max(63).optional(),
  azure_endpoint: z.string().min(3).max(128).optional(),
  azure_key: secret(128, 'Azure storage account access key.'),
  base_path: z.string().max(256).optional(),
  custom_options: StringMapSchema.optional()
}

export const BackupRepositorySpecSchema = z.strictObject({
  ...repositoryFields,
  retention_full: z.int().min(1).max(9999999).optional(),
  retention_full_type: z.enum(['time', 'count']).optional()
}).openapi('BackupRepositorySpec')

export const BackupScheduleSpecSchema = z.strictObject({
  id: z.string().max(64),
  type: z.enum(['full', 'incr']),
  cron_expression: z.string().max(32).openapi({ description: 'Evaluated in UTC.' })
}).openapi('BackupScheduleSpec')

export const BackupConfigSpecSchema = z.strictObject({
  repositories: z.array(BackupRepositorySpecSchema).min(1),
  schedules: z.array(BackupScheduleSpecSchema).max(32).optional()
}).openapi('BackupConfigSpec')

export const RestoreRepositorySpecSchema = z.strictObject(repositoryFields).openapi('RestoreRepositorySpec')

export const RestoreConfigSpecSchema = z.strictObject({
  source_database_id: IdentifierSchema,
  source_node_name: NodeNameSchema,
  source_database_name: z.string().min(1).max(31),
  repository: RestoreRepositorySpecSchema,
  restore_options: limitedMap(z.string(), MAX_RESTORE_OPTIONS).optional()
}).openapi('RestoreConfigSpec')

export const DatabaseUserSpecSchema = z.strictObject({
  username: z.string().min(1),
  password: z.string().min(1).optional().openapi({
    description: 'Write-only: never returned; omit it on update to keep the stored value.'
  }),
  db_owner: z.boolean().optional(),
  attributes: z.array(z.string()).max(16).optional(),
  roles: z.array(z.string()).max(16).optional()
}).openapi('DatabaseUserSpec')

export const DatabaseConnectionSchema = z.strictObject({
  target_nodes: z.array(z.string()).optional(),
  target_session_attrs: z.enum(TARGET_SESSION_ATTRS, {
    error: unsupportedValue(value => `invalid target_session_attrs ${JSON.stringify(value)} (must be primary, prefer-standby, standby, read-write, or any)`)
  }).optional()
}).openapi('DatabaseConnection')

export const ServiceSpecSchema = z.strictObject({
  service_id: IdentifierSchema,
  service_type: z.enum(SERVICE_TYPES, {
    error: unsupportedValue(type => `unsupported service type ${JSON.stringify(type)} (supported: ${SERVICE_TYPES.join(', ')})`)
  }),
  version: z.string().regex(SERVICE_VERSION_PATTERN, { error: "version must be in semver format (e.g., '1.0.0') or 'latest'" }),
  host_ids: z.array(IdentifierSchema).min(1),
  port: PortSchema.optional(),
  config: z.record(z.string(), z.unknown()).optional().openapi({
    description: 'Service-type-specific settings. Keys that look secret (passwords, tokens, API keys) are never returned.'
  }),
  cpus: CpusSchema.optional(),
  memory: MemorySchema.optional(),
  orchestrator_opts: OrchestratorOptsSchema.optional(),
  database_connection: DatabaseConnectionSchema.optional(),
  connect_as: z.string().openapi({ description: 'Username of the database_users entry this service connects as.' })
}).openapi('ServiceSpec')

export const DatabaseScriptsSchema = z.strictObject({
  post_init: SqlScriptSchema.optional(),
  post_database_create: SqlScriptSchema.optional()
}).openapi('DatabaseScripts')

const postgresqlConf = () => z.record(z.string(), z.unknown())
const hbaLines = () => z.array(z.string())

export const DatabaseNodeSpecSchema = z.strictObject({
  name: NodeNameSchema.openapi({ example: 'n1', description: 'Node name n<ordinal>; the ordinal is the node number used by Snowflake/LOLOR.' }),
  host_ids: z.array(IdentifierSchema).min(1).openapi({
    description: 'Hosts running this node. The first gets the primary at creation; the others are streaming replicas.'
  }),
  postgres_version: z.string().regex(POSTGRES_VERSION_PATTERN).optional(),
  port: PortSchema.optional(),
  patroni_port: PortSchema.optional(),
  cpus: CpusSchema.optional(),
  memory: MemorySchema.optional(),
  postgresql_conf: postgresqlConf().optional().openapi({ description: 'Merged over the database-level postgresql_conf.' }),
  pg_hba_conf: hbaLines().optional().openapi({ description: 'Prepended to the database-level entries, so node rules match first.' }),
  pg_ident_conf: hbaLines().optional().openapi({ description: 'Prepended to the database-level entries.' }),
  backup_config: BackupConfigSpecSchema.optional(),
  restore_config: RestoreConfigSpecSchema.optional(),
  orchestrator_opts: OrchestratorOptsSchema.optional(),
  source_node: z.string().optional().openapi({ description: 'Existing node to copy data from when this node is added.' })
}).openapi('DatabaseNodeSpec')

export const DatabaseSpecSchema = z.strictObject({
  database_name: z.string().min(1).max(31).openapi({ description: 'The Postgres database name. Cannot be changed.' }),
  postgres_version: z.string().regex(POSTGRES_VERSION_PATTERN).optional().openapi({
    description: "'major.minor'. Defaults to the hosts' default; the major version cannot change on update.",
    example: '17.6'
  }),
  spock_version: z.string().regex(SPOCK_VERSION_PATTERN).optional().openapi({ example: '5' }),
  port: PortSchema.optional().openapi({
    description: 'Host port for Postgres. 0 assigns a stable random port per instance; unset publishes no port.'
  }),
  patroni_port: PortSchema.optional(),
  cpus: CpusSchema.optional(),
  memory: MemorySchema.optional(),
  nodes: z.array(DatabaseNodeSpecSchema).min(1).max(MAX_NODES),
  database_users: z.array(DatabaseUserSpecSchema).max(MAX_USERS).optional(),
  services: z.array(ServiceSpecSchema).optional(),
  backup_config: BackupConfigSpecSchema.optional(),
  restore_config: RestoreConfigSpecSchema.optional(),
  postgresql_conf: limitedMap(z.unknown(), MAX_POSTGRESQL_CONF_KEYS).optional(),
  pg_hba_conf: hbaLines().optional(),
  pg_ident_conf: hbaLines().optional(),
  orchestrator_opts: OrchestratorOptsSchema.optional(),
  scripts: DatabaseScriptsSchema.optional()
}).openapi('DatabaseSpec')

export const CreateDatabaseRequestSchema = z.strictObject({
  id: IdentifierSchema.optional().openapi({ description: 'Defaults to a random UUID.' }),
  tenant_id: IdentifierSchema.optional(),
  spec: DatabaseSpecSchema
}).openapi('CreateDatabaseRequest')

export const UpdateDatabaseRequestSchema = z.strictObject({
  tenant_id: IdentifierSchema.optional(),
  spec: DatabaseSpecSchema
}).openapi('UpdateDatabaseRequest')

export type RepositoryType = typeof REPOSITORY_TYPES[number]
export type ExtraVolumesSpec = z.infer<typeof ExtraVolumesSpecSchema>
export type ExtraNetworkSpec = z.infer<typeof ExtraNetworkSpecSchema>
export type SwarmOpts = z.infer<typeof SwarmOptsSchema>
export type OrchestratorOpts = z.infer<typeof OrchestratorOptsSchema>
export type BackupRepositorySpec = z.infer<typeof BackupRepositorySpecSchema>
export type BackupScheduleSpec = z.infer<typeof BackupScheduleSpecSchema>
export type BackupConfigSpec = z.infer<typeof BackupConfigSpecSchema>
export type RestoreRepositorySpec = z.infer<typeof RestoreRepositorySpecSchema>
export type RestoreConfigSpec = z.infer<typeof RestoreConfigSpecSchema>
export type DatabaseUserSpec = z.infer<typeof DatabaseUserSpecSchema>
export type DatabaseConnection = z.infer<typeof DatabaseConnectionSchema>
export type ServiceSpec = z.infer<typeof ServiceSpecSchema>
export type DatabaseScripts = z.infer<typeof DatabaseScriptsSchema>
export type DatabaseNodeSpec = z.infer<typeof DatabaseNodeSpecSchema>
export type DatabaseSpec = z.infer<typeof DatabaseSpecSchema>
export type CreateDatabaseRequest = z.infer<typeof CreateDatabaseRequestSchema>
export type UpdateDatabaseRequest = z.infer<typeof UpdateDatabaseRequestSchema>
/** Either kind of repository; both carry the same credential and identity fields. */
export type RepositorySpec = BackupRepositorySpec | RestoreRepositorySpec

/**
 * The spec as the state layer stores it and hands back as `previous` on update: defaults applied (applyDefaults)
 * and secrets kept (mergeSecrets), so it is the only place write-only values live.
 */
export type StoredSpec = DatabaseSpec
