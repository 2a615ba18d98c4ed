import { z } from '@hono/zod-openapi'
import { IDENTIFIER_MESSAGE, isIdentifier } from '@pgmesh/model'

export const Identifier = z.string().min(1).max(36).refine(isIdentifier, { message: IDENTIFIER_MESSAGE })

export const ApiErrorSchema = z.object({
  name: z.string().openapi({ example: 'invalid_input' }),
  message: z.string().openapi({ example: 'nodes[0].host_ids[1]: host IDs must be unique within a node' })
}).openapi('APIError')

export const VersionSchema = z.object({
  version: z.string(),
  revision: z.string(),
  revision_time: z.string(),
  arch: z.string()
}).openapi('VersionInfo')

export const ClusterJoinTokenSchema = z.strictObject({
  token: z.string().min(1).openapi({ example: 'PGEDGE-0c8b…-5f1d…' }),
  server_urls: z.array(z.url()).min(1)
}).openapi('ClusterJoinToken')

export const JoinOptionsRequestSchema = z.strictObject({
  token: z.string().regex(/^PGEDGE-[\w]{64}-[\w]{32}$/, { message: 'invalid join token format' }),
  host_id: Identifier,
  /** The joiner's addresses and names, for its certificate (auto TLS). */
  names: z.array(z.string().min(1).max(253).regex(/^[\w.:-]+$/)).max(32).optional()
}).openapi('JoinOptionsRequest')

export const JoinDocumentRequestSchema = JoinOptionsRequestSchema.pick({ token: true }).openapi('JoinDocumentRequest')

/** A joining host's own record as Automerge changes (base64): one host record is a few KB. */
export const JoinRecordRequestSchema = JoinOptionsRequestSchema.pick({ token: true }).extend({
  changes: z.base64().max(256 * 1024)
}).openapi('JoinRecordRequest')

const Base64Pem = z.string().max(20_000)

export const JoinOptionsSchema = z.object({
  cluster_id: z.string(),
  cluster_key: z.string(),
  data_key: z.string().optional().openapi({ description: 'The cluster data key (hex), which seals the specs\' secrets' }),
  bootstrap: z.array(z.string()),
  heads: z.array(z.string()),
  credentials: z.object({
    ca_cert: Base64Pem, ca_key: Base64Pem, server_cert: Base64Pem, server_key: Base64Pem, client_cert: Base64Pem, client_key: Base64Pem
  }).optional()
}).openapi('JoinOptions')

export const Duration = z.union([z.string().regex(/^\d{1,9}[smhd]?$/), z.number().int().positive()])
  .openapi({ description: 'seconds, or a number with s, m, h or d (at most 365d)', example: '24h' })

export const ApiTokenSchema = z.object({
  id: z.string(),
  name: z.string(),
  role: z.enum(['viewer', 'operator']),
  created_at: z.string(),
  expires_at: z.string().optional()
}).openapi('ApiToken')

export const CreateApiTokenSchema = z.strictObject({
  name: z.string().min(1).max(100),
  role: z.enum(['viewer', 'operator']),
  expires_in: Duration.optional()
}).openapi('CreateApiToken')

export const JoinTokenRecordSchema = z.object({
  id: z.string(),
  created_at: z.string(),
  expires_at: z.string(),
  issued_by: z.string()
}).openapi('JoinTokenInfo')

export const ComponentStatusSchema = z.object({
  healthy: z.boolean(),
  error: z.string().optional(),
  details: z.record(z.string(), z.unknown()).optional()
}).openapi('ComponentStatus')

export const HostStatusSchema = z.object({
  state: z.enum(['healthy', 'unreachable', 'degraded', 'unknown']),
  updated_at: z.string().optional(),
  since: z.string().optional().openapi({ description: 'pgmesh extension: since when the host has been in this state (RFC 3339), as the answering host saw it change: the first heartbeat of the current run, or for unreachable the heartbeat timeout after the last one' }),
  components: z.record(z.string(), ComponentStatusSchema)
}).openapi('HostStatus')

const PgVersionSchema = z.object({
  postgres_version: z.string(),
  spock_version: z.string().optional()
}).openapi('PgEdgeVersion')

export const HostSchema = z.object({
  id: z.string(),
  orchestrator: z.enum(['process', 'swarm']),
  data_dir: z.string(),
  peer_addresses: z.array(z.string()).openapi({ description: 'libp2p multiaddrs of the host' }),
  client_addresses: z.array(z.string()),
  api_url: z.string().openapi({ description: 'pgmesh extension: the host\'s HTTP API base URL' }),
  cpus: z.number().int().optional(),
  memory: z.string().optional().openapi({ example: '17GB' }),
  status: HostStatusSchema,
  default_pgedge_version: PgVersionSchema.optional(),
  supported_pgedge_versions: z.array(PgVersionSchema).optional().openapi({
    description: "Process hosts: what the installed binaries provide (`postgres --version` of each major, read every 30 s); Swarm hosts: the version manifest's stable images"
  }),
  version: z.string().optional().openapi({ description: 'pgmesh extension: the host\'s pgmesh version' })
}).openapi('Host')

export const ClusterSchema = z.object({
  id: z.string(),
  status: z.object({ state: z.enum(['available', 'error']) }),
  hosts: z.array(HostSchema),
  document: z.object({
    heads: z.array(z.string()).openapi({ description: 'Hosts whose heads are equal hold identical documents' }),
    generation: z.number().int().optional().openapi({ description: 'The document generation (1 until the first history compaction)' })
  }).optional().openapi({ description: 'pgmesh: this host\'s replica of the cluster document' })
}).openapi('Cluster')

export const TaskSchema = z.object({
  scope: z.enum(['database', 'host']),
  entity_id: z.string(),
  task_id: z.string(),
  created_at: z.string(),
  type: z.string(),
  status: z.enum(['pending', 'running', 'completed', 'failed', 'canceling', 'canceled', 'unknown']),
  parent_id: z.string().optional(),
  database_id: z.string().optional(),
  node_name: z.string().optional(),
  instance_id: z.string().optional(),
  host_id: z.string().optional(),
  completed_at: z.string().optional(),
  error: z.string().optional()
}).openapi('Task')

export const TaskLogSchema = z.object({
  scope: z.enum(['database', 'host']),
  entity_id: z.string(),
  database_id: z.string().optional(),
  task_id: z.string(),
  task_status: TaskSchema.shape.status,
  last_entry_id: z.string().optional(),
  entries: z.array(z.object({ timestamp: z.string(), message: z.string(), fields: z.record(z.string(), z.unknown()).optional() }))
}).openapi('TaskLog')

/** A task as the API shows it: pgmesh's internal fields left out. */
export function taskResponse (task: z.infer<typeof TaskSchema> & { remove_hosts?: string[], force?: boolean, origin_host?: string }): z.infer<typeof TaskSchema> {
  const { remove_hosts: _removeHosts, force: _force, origin_host: _originHost, ...rest } = task
  return rest
}

export const RemoveHostResponseSchema = z.object({
  task: TaskSchema,
  update_database_tasks: z.array(TaskSchema)
}).openapi('RemoveHostResponse')

/** Standard error responses, documented once. */
export function errorResponses (...statuses: Array<400 | 401 | 403 | 404 | 409 | 500 | 503>): Record<number, { description: string, content: { 'application/json': { schema: typeof ApiErrorSchema } } }> {
  const descriptions: Record<number, string> = {
    400: 'Invalid input', 401: 'No valid identity (or join token)', 403: 'Not allowed for this identity', 404: 'Not found', 409: 'Conflict with the cluster or entity state', 500: 'Server error', 503: 'Shutting down'
  }
  return Object.fromEntries(statuses.map(s => [s, { description: descriptions[s] ?? 'Error', content: { 'application/json': { schema: ApiErrorSchema } } }]))
}

/** The anchor renders memory in SI units: 16 GiB → "17GB". */
export function humanBytes (bytes: number): string {
  const units: Array<[number, string]> = [[1e12, 'TB'], [1e9, 'GB'], [1e6, 'MB'], [1e3, 'kB']]
  for (const [size, unit] of units) if (bytes >= size) return `${Math.round(bytes / size)}${unit}`
  return `${bytes}B`
}

/** A documented JSON response. */
export function jsonResponse<T extends z.ZodType> (schema: T, description: string): { description: string, content: { 'application/json': { schema: T } } } {
  return { description, content: { 'application/json': { schema } } }
}
