import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import type { DatabaseView } from '@pgmesh/cluster'
import type { Task } from '@pgmesh/model'
import { CreateDatabaseRequestSchema, DatabaseSpecSchema, NotFoundError, UpdateDatabaseRequestSchema } from '@pgmesh/model'
import { CachedJson } from '../cached-json.js'
import type { ApiComponents } from '../components.js'
import { Identifier, TaskLogSchema, TaskSchema, errorResponses, jsonResponse, taskResponse } from '../schemas.js'

const DatabaseIdParam = z.object({ database_id: Identifier.openapi({ param: { name: 'database_id', in: 'path' } }) })

const DATABASE_STATES = ['creating', 'modifying', 'available', 'deleting', 'degraded', 'failed', 'restoring', 'unknown'] as const

const InstanceSchema = z.object({
  id: z.string(),
  host_id: z.string(),
  node_name: z.string(),
  state: z.string(),
  created_at: z.string().optional(),
  updated_at: z.string().optional(),
  status_updated_at: z.string().optional(),
  error: z.string().optional(),
  connection_info: z.object({ addresses: z.array(z.string()), port: z.number().int() }).optional(),
  postgres: z.record(z.string(), z.unknown()).optional(),
  spock: z.object({
    extension: z.string().optional(),
    subscriptions: z.array(z.object({
      provider_node: z.string(),
      name: z.string(),
      status: z.string(),
      error: z.string().optional().openapi({ description: "The apply worker's last error from the server log, kept until the subscription is replicating again" }),
      failing_since: z.string().optional().openapi({ description: "Since when it has been down while its provider's primary is available (RFC 3339), reported once that lasted 10 s; a create or update waiting for it fails 60 s after the later of this and the task's start" }),
      lag_bytes: z.number().int().optional().openapi({ description: "pgmesh extension: bytes of the provider's WAL this subscriber has yet to receive and confirm (the provider primary's pg_current_wal_lsn() minus its slot's confirmed_flush_lsn), as the provider last reported it (about every second); absent while the provider's primary is not reachable" })
    }).openapi('SubscriptionStatus')),
    unreplicated_ddl: z.object({
      count: z.number().int(),
      last: z.object({ logged_at: z.string(), role: z.string(), statement: z.string(), reason: z.string() })
    }).optional().openapi({ description: 'pglogical: DDL the automatic DDL replication refused on this node (CREATE TABLE AS, SELECT INTO, DDL inside a function or DO block), which exists on this node only; the latest statement cut to 200 characters' })
  }).optional()
}).openapi('Instance')

const ConflictSchema = z.object({
  path: z.string().openapi({ description: 'Field with concurrent values, e.g. `spec.postgresql_conf.work_mem`; empty for the whole database' }),
  values: z.array(z.unknown()).openapi({ description: 'The competing values, the one in effect first' }),
  hosts: z.array(z.string()).openapi({ description: 'The host that wrote each value' })
}).openapi('FieldConflict')

const AvailableUpgradeSchema = z.object({
  postgres_version: z.string(),
  spock_version: z.string().optional().openapi({ description: 'Spock images only' }),
  image: z.string()
}).openapi('AvailableUpgrade')

/** `include` as the anchor takes it (a string array; only `available_upgrades`), repeated or comma separated. */
const IncludeQuery = z.union([z.string(), z.array(z.string())]).optional()
  .transform((value, ctx) => {
    const values = ([] as string[]).concat(value ?? []).flatMap(v => v.split(',')).filter(v => v !== '')
    for (const v of values) {
      if (v !== 'available_upgrades') ctx.addIssue({ code: 'custom', message: `unsupported value ${JSON.stringify(v.slice(0, 40))}: only available_upgrades is supported` })
    }
    return values.includes('available_upgrades')
  })

const DatabaseSchema = z.object({
  id: z.string(),
  tenant_id: z.string().optional(),
  created_at: z.string(),
  updated_at: z.string(),
  state: z.enum(DATABASE_STATES),
  instances: z.array(InstanceSchema),
  spec: DatabaseSpecSchema.optional(),
  conflicts: z.array(ConflictSchema).optional().openapi({ description: 'pgmesh: fields edited concurrently on different hosts, until an update settles them' }),
  spec_errors: z.array(z.string()).optional().openapi({ description: 'pgmesh: why the merged spec is not applied (it failed validation after a merge)' }),
  available_upgrades: z.array(AvailableUpgradeSchema).optional().openapi({
    description: 'Only with include=available_upgrades and only when not empty: stable images of the version manifest with a newer minor of the same major (Swarm databases)'
  })
}).openapi('Database')

const DatabaseSummarySchema = DatabaseSchema.omit({ spec: true }).openapi('DatabaseSummary')

const SORT_ORDERS = ['asc', 'ascend', 'ascending', 'desc', 'descend', 'descending'] as const
export const TaskListQuery = z.strictObject({
  after_task_id: z.uuid().optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  sort_order: z.enum(SORT_ORDERS).optional()
})

export function sortOrder (value: typeof SORT_ORDERS[number] | undefined): 'asc' | 'desc' | undefined {
  return value === undefined ? undefined : value.startsWith('asc') ? 'asc' : 'desc'
}

const bool = z.enum(['true', 'false']).optional()

type DatabaseBody = z.infer<typeof DatabaseSchema>
type DatabaseSummaryBody = z.infer<typeof DatabaseSummarySchema>

/** The view is built from the validated spec, redacted: the response schema's shape. */
function body (view: DatabaseView): DatabaseBody {
  return view as unknown as DatabaseBody
}

function summary (view: DatabaseView): DatabaseSummaryBody {
  const { spec: _spec, ...rest } = view
  return rest as unknown as DatabaseSummaryBody
}

/** The view with `available_upgrades` when asked for and there are some (the anchor omits an empty list). */
function withUpgrades<T extends { id: string }> (view: T, db: ApiComponents['databases'], include: boolean): T {
  if (!include) return view
  const upgrades = db.availableUpgrades(view.id)
  return upgrades.length === 0 ? view : { ...view, available_upgrades: upgrades }
}

export function registerDatabaseRoutes (app: OpenAPIHono, { databases: db, tasks }: Pick<ApiComponents, 'databases' | 'tasks'>): void {
  const listResponse = new CachedJson()
  app.openapi(createRoute({
    method: 'get', path: '/v1/databases', tags: ['Database'], operationId: 'list-databases', summary: 'List databases',
    request: { query: z.strictObject({ include: IncludeQuery }) },
    responses: {
      200: jsonResponse(z.object({ databases: z.array(DatabaseSummarySchema) }), 'Databases (gzip when accepted; ETag, If-None-Match)'),
      304: { description: 'Not modified: nothing changed since the response with the ETag given in If-None-Match' },
      ...errorResponses(400, 409, 500)
    }
  }), c => {
    const { version, databases } = db.list()
    // Upgrades also move with the manifest file, which the cached response does not follow: computed each time.
    if (c.req.valid('query').include) return c.json({ databases: databases.map(d => withUpgrades(summary(d), db, true)) }, 200)
    return listResponse.respond(c, version, () => ({ databases: databases.map(summary) }))
  })

  app.openapi(createRoute({
    method: 'post', path: '/v1/databases', tags: ['Database'], operationId: 'create-database', summary: 'Create a database (asynchronous)',
    request: { body: { required: true, content: { 'application/json': { schema: CreateDatabaseRequestSchema } } } },
    responses: { 200: jsonResponse(z.object({ task: TaskSchema, database: DatabaseSchema }), 'Create task and the new database'), ...errorResponses(400, 409, 500) }
  }), async (c) => {
    const { task, database } = await db.create(c.req.valid('json') as { id?: string, tenant_id?: string, spec: unknown })
    return c.json({ task: taskResponse(task), database: body(database) }, 200)
  })

  app.openapi(createRoute({
    method: 'get', path: '/v1/databases/{database_id}', tags: ['Database'], operationId: 'get-database', summary: 'Get a database',
    request: { params: DatabaseIdParam, query: z.strictObject({ include: IncludeQuery }) },
    responses: { 200: jsonResponse(DatabaseSchema, 'Database'), ...errorResponses(400, 404, 409, 500) }
  }), c => c.json(withUpgrades(body(db.get(c.req.valid('param').database_id)), db, c.req.valid('query').include), 200))

  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/upgrade', tags: ['Database'], operationId: 'apply-upgrade',
    summary: 'Upgrade to a newer minor image of the version manifest (asynchronous; an update of the image and postgres_version)',
    request: {
      params: DatabaseIdParam,
      body: { required: true, content: { 'application/json': { schema: z.strictObject({ image: z.string().min(1).max(255) }).openapi('UpgradeDatabaseRequest') } } }
    },
    responses: { 200: jsonResponse(z.object({ task: TaskSchema, database: DatabaseSchema }), 'Upgrade task and the database'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { task, database } = await db.upgrade(c.req.valid('param').database_id, c.req.valid('json').image)
    return c.json({ task: taskResponse(task), database: body(database) }, 200)
  })

  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}', tags: ['Database'], operationId: 'update-database',
    summary: 'Replace a database\'s spec (asynchronous); omitted secrets keep their stored values',
    request: {
      params: DatabaseIdParam,
      query: z.strictObject({ force_update: bool, remove_host: z.union([Identifier, z.array(Identifier)]).optional() }),
      body: { required: true, content: { 'application/json': { schema: UpdateDatabaseRequestSchema } } }
    },
    responses: { 200: jsonResponse(z.object({ task: TaskSchema, database: DatabaseSchema }), 'Update task and the database'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { database_id: id } = c.req.valid('param')
    const query = c.req.valid('query')
    const removeHosts = query.remove_host === undefined ? [] : ([] as string[]).concat(query.remove_host)
    const { task, database } = await db.update(id, c.req.valid('json') as { tenant_id?: string, spec: unknown }, { forceUpdate: query.force_update === 'true', removeHosts })
    return c.json({ task: taskResponse(task), database: body(database) }, 200)
  })

  app.openapi(createRoute({
    method: 'delete', path: '/v1/databases/{database_id}', tags: ['Database'], operationId: 'delete-database', summary: 'Delete a database (asynchronous)',
    request: { params: DatabaseIdParam, query: z.strictObject({ force: bool }) },
    responses: { 200: jsonResponse(z.object({ task: TaskSchema }), 'Delete task'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { task } = await db.delete(c.req.valid('param').database_id, { force: c.req.valid('query').force === 'true' })
    return c.json({ task: taskResponse(task) }, 200)
  })

  app.openapi(createRoute({
    method: 'get', path: '/v1/databases/{database_id}/tasks', tags: ['Database'], operationId: 'list-database-tasks', summary: 'Tasks of a database, newest first',
    request: { params: DatabaseIdParam, query: TaskListQuery },
    responses: { 200: jsonResponse(z.object({ tasks: z.array(TaskSchema) }), 'Tasks'), ...errorResponses(400, 404, 409) }
  }), (c) => {
    const { database_id: id } = c.req.valid('param')
    const q = c.req.valid('query')
    const found = tasks.list({ scope: 'database', entityId: id, afterTaskId: q.after_task_id, limit: q.limit, sortOrder: sortOrder(q.sort_order) })
    return c.json({ tasks: found.map(taskResponse) }, 200)
  })

  const databaseTask = (databaseId: string, taskId: string): Task => {
    const task = tasks.get(taskId)
    if (task === undefined || task.scope !== 'database' || task.entity_id !== databaseId) throw new NotFoundError('no task found with the given ID')
    return task
  }
  const TaskParams = DatabaseIdParam.extend({ task_id: z.uuid({ message: 'the given task ID is invalid' }).openapi({ param: { name: 'task_id', in: 'path' } }) })

  app.openapi(createRoute({
    method: 'get', path: '/v1/databases/{database_id}/tasks/{task_id}', tags: ['Database'], operationId: 'get-database-task', summary: 'One task',
    request: { params: TaskParams },
    responses: { 200: jsonResponse(TaskSchema, 'Task'), ...errorResponses(400, 404, 409) }
  }), (c) => {
    const { database_id: id, task_id: taskId } = c.req.valid('param')
    return c.json(taskResponse(databaseTask(id, taskId)), 200)
  })

  app.openapi(createRoute({
    method: 'get', path: '/v1/databases/{database_id}/tasks/{task_id}/log', tags: ['Database'], operationId: 'get-database-task-log',
    summary: 'A task\'s log, gathered from every host that worked on it',
    request: { params: TaskParams, query: z.strictObject({ after_entry_id: z.uuid().optional(), limit: z.coerce.number().int().min(1).optional() }) },
    responses: { 200: jsonResponse(TaskLogSchema, 'Task log'), ...errorResponses(400, 404, 409) }
  }), async (c) => {
    const { database_id: id, task_id: taskId } = c.req.valid('param')
    const q = c.req.valid('query')
    return c.json(await tasks.readLog(databaseTask(id, taskId), { afterEntryId: q.after_entry_id, limit: q.limit }), 200)
  })

  app.openapi(createRoute({
    method: 'get', path: '/v1/databases/{database_id}/tasks/{task_id}/cancel', tags: ['Database'], operationId: 'cancel-database-task',
    summary: 'Cancel a pending or running task',
    request: { params: TaskParams },
    responses: { 200: jsonResponse(TaskSchema, 'The task, canceling'), ...errorResponses(400, 404, 409) }
  }), async (c) => {
    const { database_id: id, task_id: taskId } = c.req.valid('param')
    return c.json(taskResponse(await tasks.cancel(taskId, id)), 200)
  })

  const HistoryEntry = z.object({
    version: z.string().openapi({ description: 'Change hash: pass as `from`/`to`' }),
    time: z.string(),
    host_id: z.string(),
    operation: z.string()
  }).openapi('DatabaseChange')
  const DiffEntry = z.object({
    path: z.string(),
    action: z.enum(['set', 'removed']),
    before: z.unknown().optional(),
    after: z.unknown().optional()
  }).openapi('DatabaseDiffEntry')

  app.openapi(createRoute({
    method: 'get', path: '/v1/databases/{database_id}/history', tags: ['Database'], operationId: 'get-database-history',
    summary: 'pgmesh: every change to the database (time, host, operation) and, with from/to, what changed between two versions',
    request: { params: DatabaseIdParam, query: z.strictObject({ from: z.string().regex(/^[0-9a-f]{64}$/).optional(), to: z.string().regex(/^[0-9a-f]{64}$/).optional() }) },
    responses: { 200: jsonResponse(z.object({ changes: z.array(HistoryEntry), diff: z.array(DiffEntry).optional() }), 'History'), ...errorResponses(400, 404, 409) }
  }), (c) => {
    const { database_id: id } = c.req.valid('param')
    const q = c.req.valid('query')
    const history = db.history(id)
    if (q.from === undefined && q.to === undefined) return c.json({ changes: history }, 200)
    return c.json({ changes: history, diff: db.diff(id, q.from, q.to) }, 200)
  })
}
