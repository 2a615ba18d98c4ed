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
import { imageReferenceProblem } from './names-policy.js'
import { isStorableJson, MAX_NUMBER } from './settings-policy.js'
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
/*
 * pgmesh's bounds where the anchor's schema has none (issue 16: one oversized spec replicates to every host). Each
 * is far above any real spec; together with the API's 1 MiB body limit they keep a spec small.
 */
export const MAX_HOSTS_PER_NODE = 16
export const MAX_SERVICES = 16
export const MAX_REPOSITORIES = 4 // pgBackRest's repo1..repo4
export const MAX_HBA_LINES = 256
export const MAX_HBA_LINE_LENGTH = 1024
export const MAX_MAP_ENTRIES = 64
const MAX_TEXT = 1024
const MAX_NAME = 256

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

/** n<ordinal>; the ordinal is bounded (n99999) because it ends up in slot names and Snowflake/LOLOR node numbers. */
const NodeNameSchema = z.string().regex(NODE_NAME_PATTERN)
  .refine(name => name.length <= 6 || !NODE_NAME_PATTERN.test(name), { error: 'must be n followed by at most 5 digits' })
const PortSchema = z.int().min(0).max(65535)
const CpusSchema = z.string().max(16).regex(CPUS_PATTERN).openapi({
  description: "CPUs to allocate, optionally with the SI suffix 'm' ('500m' = half a CPU). 0 or unset means all of the host's CPUs.",
  example: '0.5'
})
const MemorySchema = z.string().max(16).openapi({
  description: "Memory in SI or IEC notation ('16GiB', '500M'). Unset means the host's total memory.",
  example: '16GiB'
})
const TextSchema = z.string().max(MAX_TEXT)
const StringMapSchema = limitedMap(TextSchema, MAX_MAP_ENTRIES)
const SqlScriptSchema = z.array(z.string().min(1).max(1024)).max(256).openapi('SQLScript', {
  description: 'Each element is one SQL statement.'
})

/** A map with at most `max` keys (zod records have no key-count check; the refinement keeps the anchor's limit). */
function limitedMap<T extends z.ZodType> (values: T, max: number) {
  return z.record(z.string().max(MAX_NAME), values)
    .refine(map => Object.keys(map).length <= max, { error: `must have at most ${max} entries` })
    .openapi({ maxProperties: max })
}

export const ExtraVolumesSpecSchema = z.strictObject({
  host_path: z.string().max(256),
  destination_path: z.string().max(256)
}).openapi('ExtraVolumesSpec', { description: 'A host path bind-mounted into the database container.' })

export const ExtraNetworkSpecSchema = z.strictObject({
  id: z.string().max(MAX_NAME),
  aliases: z.array(z.string().max(MAX_NAME)).max(8).optional(),
  driver_opts: StringMapSchema.optional()
}).openapi('ExtraNetworkSpec')

export const SwarmOptsSchema = z.strictObject({
  extra_volumes: z.array(ExtraVolumesSpecSchema).max(16).optional(),
  extra_networks: z.array(ExtraNetworkSpecSchema).max(8).optional(),
  extra_labels: StringMapSchema.optional(),
  image: z.string().max(255).refine(image => imageReferenceProblem(image) === undefined, {
    error: 'must be an image reference ([registry/]repository[:tag][@digest])'
  }).optional().openapi({ description: 'Image reference; a host runs only images of the repositories it allows (by default its own default image\'s).' })
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
  repositories: z.array(BackupRepositorySpecSchema).min(1).max(MAX_REPOSITORIES),
  schedules: z.array(BackupScheduleSpecSchema).max(32).optional()
}).openapi('BackupConfigSpec')

export const RestoreRepositorySpecSchema = z.strictObject(repositoryFields).openapi('RestoreRepositorySpec')

export const RestoreConfigSpecSchema = z.strictObject({
  source_database_id: IdentifierSchema,
  source_node_name: NodeNameSchema,
  source_database_name: z.string().min(1).max(31),
  repository: RestoreRepositorySpecSchema,
  restore_options: limitedMap(TextSchema, MAX_RESTORE_OPTIONS).optional()
}).openapi('RestoreConfigSpec')

export const DatabaseUserSpecSchema = z.strictObject({
  username: z.string().min(1).max(63),
  password: z.string().min(1).max(MAX_TEXT).optional().openapi({
    description: 'Write-only: never returned; omit it on update to keep the stored value.'
  }),
  db_owner: z.boolean().optional(),
  attributes: z.array(z.string().max(32)).max(16).optional(),
  roles: z.array(z.string().max(63)).max(16).optional()
}).openapi('DatabaseUserSpec')

export const DatabaseConnectionSchema = z.strictObject({
  target_nodes: z.array(z.string().max(6)).max(MAX_NODES).optional(),
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
  host_ids: z.array(IdentifierSchema).min(1).max(MAX_HOSTS_PER_NODE),
  port: PortSchema.optional(),
  config: limitedMap(z.unknown(), MAX_MAP_ENTRIES).refine(config => isStorableJson(config), {
    error: `must nest at most 16 levels, with numbers between -${MAX_NUMBER} and ${MAX_NUMBER}`
  }).optional().openapi({
    description: 'Service-type-specific settings. Keys that look secret (passwords, tokens, API keys) are never returned.'
  }),
  cpus: CpusSchema.optional(),
  memory: MemorySchema.optional(),
  orchestrator_opts: OrchestratorOptsSchema.optional(),
  database_connection: DatabaseConnectionSchema.optional(),
  connect_as: z.string().max(63).openapi({ description: 'Username of the database_users entry this service connects as.' })
}).openapi('ServiceSpec')

export const DatabaseScriptsSchema = z.strictObject({
  post_init: SqlScriptSchema.optional(),
  post_database_create: SqlScriptSchema.optional()
}).openapi('DatabaseScripts')

/** Setting values are scalars; which names and values a spec may set is checked in rules.ts (settings-policy.ts). */
const SettingValueSchema = z.union([z.string(), z.number(), z.boolean()], { error: 'must be a string, number or boolean' })
const postgresqlConf = () => limitedMap(SettingValueSchema, MAX_POSTGRESQL_CONF_KEYS)
const hbaLines = () => z.array(z.string().max(MAX_HBA_LINE_LENGTH)).max(MAX_HBA_LINES)

export const DatabaseNodeSpecSchema = z.strictObject({
  name: NodeNameSchema.openapi({ example: 'n1', description: 'Node name n<ordinal>; the ordinal is the node number used by Snowflake/LOLOR.' }),
  host_ids: z.array(IdentifierSchema).min(1).max(MAX_HOSTS_PER_NODE).openapi({
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
  source_node: z.string().max(6).optional().openapi({ description: 'Existing node to copy data from when this node is added.' })
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
  services: z.array(ServiceSpecSchema).max(MAX_SERVICES).optional(),
  backup_config: BackupConfigSpecSchema.optional(),
  restore_config: RestoreConfigSpecSchema.optional(),
  postgresql_conf: postgresqlConf().optional(),
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
