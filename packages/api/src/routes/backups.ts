import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import type { Backups, Restores } from '@pgmesh/cluster'
import { RestoreConfigSpecSchema } from '@pgmesh/model'
import { Identifier, TaskSchema, errorResponses, jsonResponse, taskResponse } from '../schemas.js'

const NodeParams = z.object({
  database_id: Identifier.openapi({ param: { name: 'database_id', in: 'path' } }),
  node_name: z.string().min(1).openapi({ param: { name: 'node_name', in: 'path' } })
})
const StringMap = z.record(z.string().max(256), z.string().max(1024)).refine(m => Object.keys(m).length <= 32, { error: 'at most 32 entries' })

export const BackupOptionsSchema = z.strictObject({
  type: z.enum(['full', 'diff', 'incr']),
  annotations: StringMap.optional(),
  backup_options: StringMap.optional().openapi({ description: 'pgBackRest options (names without --); options that run commands, name paths or servers, or hold secrets are refused.' })
}).openapi('BackupOptions')

/** The anchor's on-demand node backup. */
export function registerBackupRoutes (app: OpenAPIHono, backups: Pick<Backups, 'request'>): void {
  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/nodes/{node_name}/backups', tags: ['Database'], operationId: 'backup-database-node',
    summary: 'Back up a node with pgBackRest on its primary (asynchronous)',
    request: {
      params: NodeParams,
      query: z.strictObject({ force: z.enum(['true', 'false']).optional() }),
      body: { required: true, content: { 'application/json': { schema: BackupOptionsSchema } } }
    },
    responses: { 200: jsonResponse(z.object({ task: TaskSchema }), 'Backup task'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { database_id: db, node_name: node } = c.req.valid('param')
    return c.json({ task: taskResponse(await backups.request(db, node, c.req.valid('json'))) }, 200)
  })
}

const DatabaseIdParams = z.object({ database_id: Identifier.openapi({ param: { name: 'database_id', in: 'path' } }) })

export const RestoreDatabaseRequestSchema = z.strictObject({
  restore_config: RestoreConfigSpecSchema,
  target_nodes: z.array(z.string().min(1).max(63)).max(9).optional().openapi({ description: 'Nodes to restore; default every node.' })
}).openapi('RestoreDatabaseRequest')

/** The anchor's in-place restore: a `restore` task and one `node_restore` task per target node. */
export function registerRestoreRoutes (app: OpenAPIHono, restores: Pick<Restores, 'request'>): void {
  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/restore', tags: ['Database'], operationId: 'restore-database',
    summary: 'Restore nodes in place from a pgBackRest repository (asynchronous)',
    request: {
      params: DatabaseIdParams,
      query: z.strictObject({ force: z.enum(['true', 'false']).optional() }),
      body: { required: true, content: { 'application/json': { schema: RestoreDatabaseRequestSchema } } }
    },
    responses: {
      200: jsonResponse(z.object({ task: TaskSchema, node_tasks: z.array(TaskSchema), database: z.record(z.string(), z.unknown()) }), 'Restore task, its node tasks and the database'),
      ...errorResponses(400, 404, 409, 500)
    }
  }), async (c) => {
    const { database_id: db } = c.req.valid('param')
    const { task, node_tasks: nodeTasks, database } = await restores.request(db, c.req.valid('json'), { force: c.req.valid('query').force === 'true' })
    return c.json({ task: taskResponse(task), node_tasks: nodeTasks.map(taskResponse), database: database as unknown as Record<string, unknown> }, 200)
  })
}
